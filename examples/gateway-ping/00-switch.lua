-- A switch that checks its carriers itself: every routing gateway gets an
-- OPTIONS now and then, from Lua (20-ping.lua).
switch {
  listen = { "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" },
  sip = {
    resend_interval = 500,   -- T1, ms: an unanswered OPTIONS is retransmitted at 0.5, 1.5 s ...
  },
}
