-- A switch that answers SIP MESSAGE (instant messages, SMS over SIP)
-- itself; see 10-message.lua.
switch {
  listen = { "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" },
}
