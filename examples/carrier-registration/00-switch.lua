-- A switch that answers on all its addresses and registers to one carrier.
switch {
  listen = { "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" },
  sip = {
    user_agent_expire = "auto",      -- take what the carrier grants
    user_agent_retry_delay = 60,     -- VOS3000's default
    user_agent_send_unregister = true,
  },
}
