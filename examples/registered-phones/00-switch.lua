-- An office PBX front: phones and small gateways register to the switch
-- with digest authentication.
switch {
  listen = { "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" },
  sip = {
    endpoint_expire = 3600,            -- SS_ENDPOINT_EXPIRE: longest expiry granted
    endpoint_nat_expire = 60,          -- SS_ENDPOINT_NAT_EXPIRE: behind NAT, refresh often
    endpoint_register_retry = 6,       -- SS_ENDPOINT_REGISTER_RETRY: failures before...
    endpoint_register_suspend = 300,   -- SS_ENDPOINT_REGISTER_SUSPEND: ...403 for 5 minutes
    endpoint_register_replace = false, -- SS_ENDPOINT_REGISTER_REPLACE: desk phone and softphone
    endpoint_digest = "md5",           -- the default: every phone answers MD5 (see 10-phones)
    endpoint_keepalive = "options",    -- NAT pinholes: an OPTIONS every 30 s ("crlf": RFC 5626)
    endpoint_keepalive_interval = 30,  -- within the shortest UDP timeout of common NATs
  },
}
