-- The carrier demands registration before it takes calls from us.

-- Capped exponential backoff with jitter: 30 s, 60 s, 120 s ... at most
-- 600 s (the switch holds any value to 30..600), each spread by up to 10%
-- so many entries do not retry in step.
local function backoff(reg)
  local delay = 30 * 2 ^ math.max(0, reg.failures - 1)
  return math.min(600, delay * (1 + math.random() * 0.1))
end

registration "carrier-a" {
  server = "203.0.113.10", port = 5060,
  username = "acct1", password = "change-me",
  hostname = "carrier-a.example",
  expires = "auto",
  retry_delay = backoff,
  mode = "dynamic",          -- Contact follows the address the carrier sees (NAT)
  privacy = "ignore",
}

-- Calls go to this carrier only while the registration is active.
routing_gateway "carrier-a" {
  type = "registration",
  registration = "carrier-a",
  address = "203.0.113.10:5060",
  prefixes = { "880", "1" },
  priority = 1,
  line_limit = 100,
  callee_rewrite = { { "^00", "" } },
}
