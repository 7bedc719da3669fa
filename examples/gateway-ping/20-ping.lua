-- Ping every routing gateway named in `ping_gateways` (10-gateways.lua)
-- with an OPTIONS every `ping_interval` seconds, all gateways at once, and
-- log each round-trip time. The last result of each is kept in
-- `ping_results`, to read from the REPL:
--
--   moonctl -e 'return ping_results'
--   moonctl -e 'return ping_results["carrier-a"].rtt_ms'
--
-- A gateway that does not answer within `ping_timeout` reads 408; one that
-- cannot be reached at all (no route, DNS) reads 503.

local INTERVAL = ping_interval or 10
local TIMEOUT = ping_timeout or 2

-- A monotonic clock for the round-trip time (Lua's os.time() counts whole
-- seconds). LuaJIT's FFI calls clock_gettime directly.
local ffi = require("ffi")
ffi.cdef [[
  struct ping_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clock_id, struct ping_timespec *tp);
]]
local ts = ffi.new("struct ping_timespec")
local CLOCK_MONOTONIC = 1
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- One line per result on the switch's stderr, beside its own log.
local function log(level, fmt, ...)
  io.stderr:write(string.format("%s %-5s %-8s %s\n", os.date("%H:%M:%S"), level, "ping",
                                string.format(fmt, ...)))
end

ping_results = {}

local busy = false

local function ping_all()
  if busy then
    return -- the previous round still waits for a slow gateway
  end
  busy = true
  -- Send to every gateway first, then collect: all in flight together.
  local pending = {}
  for _, name in ipairs(ping_gateways or {}) do
    local gw = gateways[name]
    if gw and gw.address then
      local sent = now()
      local ok, tx = pcall(sip.request, {
        method = "OPTIONS",
        uri = "sip:" .. gw.address,
        headers = { ["X-Ping"] = name },
        timeout = TIMEOUT,
      })
      if ok then
        pending[#pending + 1] = { name = name, tx = tx, sent = sent }
      else
        log("error", "%s: %s", name, tx) -- a bad address, or the sip.max_pending cap
      end
    end
  end
  for _, p in ipairs(pending) do
    local res = p.tx:wait()
    local rtt_ms = (now() - p.sent) * 1000
    ping_results[p.name] = { status = res.status, reason = res.reason,
                             rtt_ms = math.floor(rtt_ms * 10 + 0.5) / 10, at = os.time() }
    if res.status < 300 or res.status == 405 then -- 405: alive, OPTIONS not served
      log("info", "%s: %d %s in %.1f ms", p.name, res.status, res.reason, rtt_ms)
    else
      log("warn", "%s: %d %s after %.1f ms", p.name, res.status, res.reason, rtt_ms)
    end
  end
  busy = false
end

-- Each firing runs in its own task; a reload stops this timer and the
-- reloaded policy starts its own.
ping_timer = timer.every(INTERVAL, ping_all)
timer.after(0, ping_all) -- a first round right away
