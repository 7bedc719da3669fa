-- moonswitch default policy.
--
-- Every *.lua file in this directory is loaded in name order. Each
-- definition reads `kind "name" { fields }`; a mistake is refused with the
-- file and line, and the running policy stays. Reload with SIGHUP or
-- `moonctl -e 'return reload()'`.

switch {
  -- Where the switch answers SIP. `moonswitch --listen` replaces this list.
  listen = { "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" },

  -- Prometheus: GET http://IP:PORT/metrics (no authentication: keep it on a
  -- loopback or private address). Left out: no listener.
  -- metrics = "127.0.0.1:9464",

  -- VOS3000's SIP parameters, under their Lua names (VOS3000 name beside).
  sip = {
    user_agent_expire = "auto",          -- SS_SIP_USER_AGENT_EXPIRE: "auto" | 20..7200
    user_agent_retry_delay = 60,         -- SS_SIP_USER_AGENT_RETRY_DELAY: 30..600 s
    user_agent_send_unregister = true,   -- SS_SIP_USER_AGENT_SEND_UNREGISTER
    user_agent_privacy = "ignore",       -- SS_SIP_USER_AGENT_PRIVACY: "ignore" | "id" | "none"
    routing_gateway_invite_use_contact = false, -- SS_SIP_ROUTING_GATEWAY_INVITE_USE_CONTACT
    endpoint_expire = 3600,              -- SS_ENDPOINT_EXPIRE: 300..3600 s
    endpoint_nat_expire = 300,           -- SS_ENDPOINT_NAT_EXPIRE: 20..3600 s
    endpoint_register_retry = 6,         -- SS_ENDPOINT_REGISTER_RETRY
    endpoint_register_suspend = 180,     -- SS_ENDPOINT_REGISTER_SUSPEND, seconds
    endpoint_register_replace = true,    -- SS_ENDPOINT_REGISTER_REPLACE
    endpoint_keepalive = "options",      -- NAT keepalive: "options" | "crlf" | "off"
    endpoint_keepalive_interval = 30,    -- NAT keepalive period: 5..3600 s
    endpoint_keepalive_misses = 3,       -- unanswered OPTIONS that remove a binding: 1..20
    invite_timeout = 10,                 -- SS_SIP_TIMEOUT_INVITE, seconds
    call_progress_timeout = 120,         -- SS_SIP_TIMEOUT_RINGING: no final answer, seconds
    resend_interval = 500,               -- SS_SIP_RESEND_INTERVAL (RFC 3261 T1), ms
    failover_codes = { 408, 480, 500, 502, 503, 504 }, -- final statuses that try the next gateway
    authentication_retry = 1,            -- SS_SIP_AUTHENTICATION_RETRY: carrier challenges answered
    -- Session timers (RFC 4028), on each leg of a call:
    session_ttl = 600,                   -- SS_SIP_SESSION_TTL: Session-Expires, 90..86400 s; false: off
    session_update_segment = 2,          -- SS_SIP_SESSION_UPDATE_SEGMENT: refresh every ttl/segment
    session_timeout_early_hangup = 0,    -- SS_SIP_SESSION_TIMEOUT_EARLY_HANGUP: seconds before expiry
    session_min_se = 90,                 -- Min-SE accepted and sent, seconds
    no_timer_reinvite_interval = 7200,   -- SS_SIP_NO_TIMER_REINVITE_INTERVAL: longest call with a leg
                                         -- without session timer, seconds; 0: no limit
    no_timer_options_interval = false,   -- in-dialog OPTIONS to legs without timer, seconds; false: off
    e164_display_from = "ignore",        -- SS_SIP_E164_DISPLAY_FROM: "ignore" | "caller" | "none"
  },

  -- Hostile traffic. A source address that is no gateway (mapping and
  -- routing gateways, registration servers, sources of registered phones)
  -- sending over source_rate requests a second is ignored for source_ban
  -- seconds: see suspensions(), suspensions.lift(ip), function on_flood().
  security = {
    source_rate = 100,                   -- requests/s per source; 0: no limit
    source_ban = 600,                    -- seconds a flooding source is dropped
    max_calls = 0,                       -- calls in progress; over it 503; 0: no limit
    overload_shedding = true,            -- 503 to new calls while behind on received SIP
  },
}

-- Carriers, customers and accounts go in further files, for example
-- 10-carriers.lua and 20-customers.lua. See examples/ for complete set-ups.
