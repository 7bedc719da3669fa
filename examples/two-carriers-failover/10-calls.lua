-- Two carriers for the same destinations, one customer.
--
-- Calls from the customer (identified by its source address) to numbers
-- starting 00 go to carrier-a first; when carrier-a refuses with a failure
-- (408, 480, 500, 502, 503, 504), does not answer within invite_timeout, or
-- is at its line limit, the call fails over to carrier-b. A busy callee
-- (486) or an unknown number (404) goes straight back to the customer.
--
-- Watch it from the REPL:
--   moonctl -e 'return gateways'              -- status table, calls per gateway
--   moonctl -e 'return calls.count()'
--   moonctl -e 'return cdrs.last(5)'          -- newest first
--   moonctl -e 'return cdrs.csv(100)'         -- CSV export

switch {
  listen = { "udp:127.0.0.1:5060" },
  sip = {
    invite_timeout = 5,           -- no 1xx in 5 s: try the next carrier
    call_progress_timeout = 60,   -- ringing for a minute: give up on this carrier
    routing_gateway_invite_use_contact = false,
  },
}

mapping_gateway "customer-x" {
  addresses = { "127.0.0.1" },
  callee_from = "to",
  caller_from = "from",
  line_limit = 50,
}

routing_gateway "carrier-a" {
  address = "127.0.0.1:5070",
  prefixes = { "00" },
  priority = 1,
  line_limit = 30,
  callee_rewrite = { { "^00", "" } },    -- carrier-a wants national format
}

routing_gateway "carrier-b" {
  address = "127.0.0.1:5080",
  prefixes = { "00" },
  priority = 2,
  callee_rewrite = { { "^00", "+" } },   -- carrier-b wants E.164 with +
}
