-- The carriers calls are routed to. They are defined from one table, so
-- the ping policy (20-ping.lua) can walk the same list of names: the live
-- `gateways` object answers gateways[name] but cannot be iterated.

local carriers = {
  ["carrier-a"] = { address = "203.0.113.10:5060", prefixes = { "1" }, priority = 1 },
  ["carrier-b"] = { address = "198.51.100.20:5060", prefixes = { "1" }, priority = 2 },
  ["carrier-c"] = { address = "192.0.2.30:5080", prefixes = { "44", "33" } },
}

-- The names, in a stable order, for 20-ping.lua.
ping_gateways = {}
for name, fields in pairs(carriers) do
  fields.type = "static"
  routing_gateway(name)(fields)   -- the same as: routing_gateway "carrier-a" { ... }
  ping_gateways[#ping_gateways + 1] = name
end
table.sort(ping_gateways)

-- How often to ping (seconds) and how long to wait for each answer.
ping_interval = 10
ping_timeout = 2
