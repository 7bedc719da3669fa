-- Least-cost routing: one customer, three carriers, prices by destination
-- and time of day, the caller's number rewritten to what carriers accept.
--
-- The carriers are ordinary routing gateways; what makes this least-cost
-- is route() in 20-route.lua, which orders them by the rates in
-- 10-rates.lua for the current time band.

switch {
  listen = { "udp:0.0.0.0:5060" },
  sip = {
    invite_timeout = 4,        -- a carrier silent for 4 s: the next one
    route_timeout = 2,         -- route() answers within 2 s or the call gets 500
  },
}

mapping_gateway "customer-x" {
  addresses = { "198.51.100.7" },
  caller_from = "pai",          -- the customer asserts its callers in P-Asserted-Identity
  line_limit = 100,
}

-- Prefixes say what each carrier can carry at all; route() picks among
-- them by price. Each gets the number in its own format.
routing_gateway "carrier-a" {
  address = "203.0.113.10:5060",
  prefixes = { "44", "1" },
  line_limit = 60,
}

routing_gateway "carrier-b" {
  address = "203.0.113.20:5060",
  prefixes = { "44", "49" },
  callee_rewrite = { { "^", "+" } },      -- E.164 with +
}

routing_gateway "carrier-c" {
  address = "192.0.2.30:5060",
  prefixes = { "447", "49", "1" },
  username = "acct-4471", password = "change-me",   -- it challenges our INVITEs
}
