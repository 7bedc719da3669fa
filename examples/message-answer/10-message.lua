-- Answer MESSAGE requests.
--
-- The switch answers OPTIONS (and, later, INVITE and REGISTER) itself;
-- every other request from outside a dialog comes to on_request(req).
-- Here:
--   MESSAGE with a text body  -> 200, the text kept per recipient in kv,
--                                or forwarded first when message_forward_to
--                                is set (see below)
--   MESSAGE of another type   -> 415 with Accept
--   MESSAGE over 1300 bytes   -> 513
--   anything else             -> 405 with Allow
--
-- A hook must answer every request it gets, exactly once: one that returns
-- without answering, or raises, gets an automatic 500 (logged with this
-- file and line).
--
-- Read what came in from the REPL:
--   moonctl -e 'return kv.get("message:bob")'

-- Set to a SIP URI (say in a file 05-settings.lua) to relay each MESSAGE
-- there and answer with that server's answer.
local FORWARD_TO = message_forward_to
local FORWARD_TIMEOUT = 3
local MAX_BODY = 1300

local ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE"

local function log(fmt, ...)
  io.stderr:write(string.format("%s %-5s %-8s %s\n", os.date("%H:%M:%S"), "info", "message",
                                string.format(fmt, ...)))
end

local function is_text(content_type)
  return content_type ~= nil and content_type:lower():match("^%s*text/plain") ~= nil
end

local function answer_message(req)
  local body = req.body or ""
  local ctype = req:header("Content-Type") -- also finds the compact form "c:"
  if #body > MAX_BODY then
    return req:reply(513, "Message Too Large")
  end
  if not is_text(ctype) then
    return req:reply(415, "Unsupported Media Type", { Accept = "text/plain" })
  end
  local from = req.from and req.from.user or "?"
  local to = req.to and req.to.user or req.request_uri.user or "?"

  if FORWARD_TO then
    -- Waiting here yields this task only; the switch serves others meanwhile.
    local res = sip.request{
      method = "MESSAGE",
      uri = FORWARD_TO,
      headers = { ["Content-Type"] = ctype, ["X-Original-From"] = from },
      body = body,
      timeout = FORWARD_TIMEOUT,
    }:wait()
    log("%s -> %s: %d bytes relayed to %s: %d %s", from, to, #body, FORWARD_TO, res.status,
        res.reason)
    if res.status == 408 then
      return req:reply(504, "Relay Timeout")
    end
    return req:reply(res.status, res.reason, { ["X-Relayed-By"] = "moonswitch" })
  end

  kv.put("message:" .. to, body)
  log("%s -> %s: %d bytes", from, to, #body)
  req:reply(200, "Delivered", { ["X-Message-Length"] = #body })
end

function on_request(req)
  if req.method == "MESSAGE" then
    return answer_message(req)
  end
  req:reply(405, "Method Not Allowed", { Allow = ALLOW })
end
