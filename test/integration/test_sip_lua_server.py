"""The server side of SIP in Lua: the policy's on_request(req) hook for
out-of-dialog requests the core does not handle (MESSAGE, INFO, unknown
methods), req:reply once, the automatic 500 of a hook that errors or
forgets to answer, hooks that yield (sleep, sip.request) before answering,
and request objects read by full and compact header names. Requests come
from raw UDP/TCP sockets (python) so every byte of them is under control."""

import os
import socket
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Switch, check, check_eq, parse_response, run_tests,  # noqa: E402
                     udp_exchange)
from peers import Kamailio, switch_policy  # noqa: E402

SWITCH = switch_policy(resend_interval=100)

# Line numbers matter: the automatic 500 is logged with the hook's file:line.
HOOK = '''-- on_request for the tests: behaviour chosen by the Request-URI user.
requests_seen = 0

function on_request(req)
  requests_seen = requests_seen + 1
  local who = req.request_uri.user
  if who == "echo" then
    req:reply(200, "Echoed", {
      ["X-Method"] = req.method,
      ["X-Body"] = req.body,
      ["X-From-User"] = req.from.user,
      ["X-Seen"] = requests_seen,
    })
  elseif who == "slow" then
    sleep(0.5)
    req:reply(200, "Slept", { ["X-Slept"] = "0.5" })
  elseif who == "upstream" then
    local res = sip.request{ method = "OPTIONS", uri = upstream, timeout = 5 }:wait()
    req:reply(200, "Asked", { ["X-Upstream"] = res.status .. " " .. res.reason })
  elseif who == "boom" then
    error("boom from the hook")
  elseif who == "forget" then
    return
  elseif who == "ring" then
    req:reply(180, "Ringing")
  elseif who == "twice" then
    local bad = { pcall(req.reply, req, 99) }
    local badh = { pcall(req.reply, req, 200, "OK", { ["Bad Name"] = "x" }) }
    req:reply(202, "Taken")
    local again = { pcall(req.reply, req, 486, "Busy") }
    kv.put("twice", table.concat({ tostring(bad[1]), bad[2], tostring(badh[1]), badh[2],
                                   tostring(again[1]), again[2] }, "|"))
  elseif who == "readonly" then
    local ok, err = pcall(function() req.method = "INVITE" end)
    req:reply(200, "Checked", { ["X-Readonly"] = tostring(ok) .. " " .. err })
  elseif who == "headers" then
    local h = {
      ["X-From"] = req:header("From"),
      ["X-F"] = req:header("f"),
      ["X-To-Eq"] = tostring(req:header("To") == req:header("t")),
      ["X-Vias"] = #req:headers("Via"),
      ["X-V"] = #req:headers("v"),
      ["X-Via2"] = req:headers("VIA")[2],
      ["X-Call-Id"] = req:header("i"),
      ["X-Call-Id-Eq"] = tostring(req:header("Call-ID") == req.call_id),
      ["X-Contact"] = req:header("m"),
      ["X-CT"] = req:header("CONTENT-TYPE"),
      ["X-C"] = req:header("c"),
      ["X-L"] = req:header("l"),
      ["X-Len"] = req:header("content-length"),
      ["X-Multi"] = table.concat(req:headers("x-multi"), "+"),
      ["X-None"] = tostring(req:header("X-Absent")) .. " " .. #req:headers("X-Absent"),
      ["X-Body"] = req.body,
      ["X-Uri"] = req.uri,
      ["X-Ruri"] = req.request_uri.user .. "@" .. req.request_uri.host .. ":"
                   .. req.request_uri.port .. " " .. tostring(req.request_uri.params.transport),
      ["X-From-Display"] = req.from.display,
      ["X-From-Parsed"] = req.from.user .. "|" .. req.from.host
                          .. "|" .. req.from.tag .. "|" .. req.from.params.user,
      ["X-To-Parsed"] = req.to.user .. "|" .. tostring(req.to.tag),
      ["X-Contact-Port"] = req.contact.port,
      ["X-CSeq"] = req.cseq,
      ["X-Status"] = tostring(req.status),
    }
    req:reply(200, "Headers", h)
  else
    req:reply(404, "No Such Test")
  end
end
'''
HOOK_LINE = HOOK.split("\n").index("function on_request(req)") + 1


def hook_switch():
    return Switch({"00-switch.lua": SWITCH, "10-hook.lua": HOOK})


def message(sw, user, body="hi", transport="udp", method="MESSAGE", extra=(), timeout=3.0,
            want_final=True):
    """Send a request to user@switch; the parsed final answer (status, headers, body)."""
    ct = ["Content-Type: text/plain"] if body else []
    raw = sw_request(sw, user, method, body, transport, list(extra) + ct)
    if transport == "udp":
        reply = udp_exchange(sw.port, raw, timeout, want_final)
    else:
        reply = sw.send_raw_tcp(raw, timeout)
    check(reply is not None, "no answer to %s for %r over %s\n%s"
          % (method, user, transport, sw.log_tail(15)))
    return parse_response(reply)


def sw_request(sw, user, method, body, transport, extra):
    if isinstance(body, str):
        body = body.encode()
    tok = uuid.uuid4().hex[:12]
    tr = transport.upper()
    lines = [
        "%s sip:%s@127.0.0.1:%d;transport=%s SIP/2.0" % (method, user, sw.port, transport),
        "Via: SIP/2.0/%s 127.0.0.1:5099;branch=z9hG4bK-%s;rport" % (tr, tok),
        "Max-Forwards: 70",
        "From: <sip:tester@127.0.0.1:5099>;tag=%s" % tok,
        "To: <sip:%s@127.0.0.1:%d>" % (user, sw.port),
        "Call-ID: %s@127.0.0.1" % tok,
        "CSeq: 1 %s" % method,
        "Contact: <sip:tester@127.0.0.1:5099;transport=%s>" % transport,
    ] + list(extra) + ["Content-Length: %d" % len(body)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def hdr(parsed, name):
    values = parsed[1].get(name.lower(), [])
    return values[0] if values else None


def test_message_answered_by_hook():
    with hook_switch() as sw:
        for transport in ("udp", "tcp"):
            st, headers, _ = message(sw, "echo", "hello moon", transport)
            check_eq(st, 200, "MESSAGE over %s" % transport)
            check_eq((hdr((st, headers), "X-Method"), hdr((st, headers), "X-Body"),
                      hdr((st, headers), "X-From-User")),
                     ("MESSAGE", "hello moon", "tester"), "what the hook read (%s)" % transport)
        # INFO and an unknown method reach the hook too.
        for method in ("INFO", "PUBLISH", "FROBNICATE"):
            p = message(sw, "echo", "x", method=method)
            check_eq((p[0], hdr(p, "X-Method")), (200, method), "%s given to on_request" % method)
        # OPTIONS is answered by the core, never given to the hook.
        before = int(sw.ctl("return requests_seen")[1])
        check_eq(sw.options(), 200, "OPTIONS")
        check_eq(int(sw.ctl("return requests_seen")[1]), before, "hook calls after an OPTIONS")


def test_without_hook():
    """No on_request: 405 for a known method, 501 for an unknown one."""
    with Switch({"00-switch.lua": SWITCH}) as sw:
        check_eq(message(sw, "echo", "x")[0], 405, "MESSAGE without a hook")
        check_eq(message(sw, "echo", "x", method="FROBNICATE")[0], 501, "unknown method")


def test_hook_yields_before_answering():
    with Kamailio() as k, hook_switch() as sw:
        # sleep(0.5) in the hook: the answer comes later, the switch meanwhile serves others.
        result = {}

        def slow():
            t0 = time.monotonic()
            result["p"] = message(sw, "slow", "x", timeout=5)
            result["dt"] = time.monotonic() - t0

        import threading
        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        check_eq(message(sw, "echo", "x")[0], 200, "a MESSAGE while another hook sleeps")
        check_eq(sw.options(), 200, "OPTIONS while a hook sleeps")
        check(time.monotonic() - t0 < 0.4, "other requests waited for the sleeping hook")
        th.join(10)
        p = result.get("p")
        check(p is not None, "no answer from the sleeping hook")
        check_eq((p[0], hdr(p, "X-Slept")), (200, "0.5"), "the sleeping hook's answer")
        check(result["dt"] >= 0.45, "the sleeping hook answered after %.2f s" % result["dt"])
        # A hook that asks another server first (sip.request in the hook).
        rc, out, err = sw.ctl('upstream = "sip:127.0.0.1:%d"' % k.port)
        check_eq(rc, 0, "setting upstream (%s)" % err)
        p = message(sw, "upstream", "x")
        check_eq((p[0], hdr(p, "X-Upstream")), (200, "200 OK"), "a hook that asked Kamailio")


def test_hook_survives_reload():
    """A hook sleeping when the policy is reloaded still answers (in the old state)."""
    with hook_switch() as sw:
        import threading
        result = {}
        th = threading.Thread(target=lambda: result.setdefault("p", message(sw, "slow", "x",
                                                                            timeout=5)))
        th.start()
        time.sleep(0.15)
        sw.write_policy("10-hook.lua", HOOK.replace('"Echoed"', '"Echoed Again"'))
        rc, out, err = sw.ctl("return (reload())")
        check_eq((rc, out), (0, "true\n"), "reload while a hook sleeps (%s)" % err)
        th.join(10)
        p = result.get("p")
        check(p is not None and p[0] == 200 and hdr(p, "X-Slept") == "0.5",
              "the hook that slept over the reload: %r" % (p,))
        st, headers, _ = message(sw, "echo", "x")
        check_eq((st, headers.get("x-method")), (200, ["MESSAGE"]), "after the reload")
        # The new hook answers (its reason phrase changed).
        raw = udp_exchange(sw.port, sw_request(sw, "echo", "MESSAGE", b"", "udp", []), 3)
        check(raw is not None and b"Echoed Again" in raw.split(b"\r\n")[0],
              "the new hook's answer: %r" % raw)


def test_hook_that_errors():
    with hook_switch() as sw:
        p = message(sw, "boom", "x")
        check_eq(p[0], 500, "a hook that raised")
        check(sw.wait_log("boom from the hook", 3), "the error is not logged\n%s" % sw.log_tail())
        line = [ln for ln in sw.log().splitlines() if "boom from the hook" in ln][0]
        check("on_request" in line and "10-hook.lua:" in line,
              "the log line does not say where: %r" % line)
        check_eq(message(sw, "echo", "x")[0], 200, "the next request")


def test_hook_that_forgets_to_answer():
    with hook_switch() as sw:
        p = message(sw, "forget", "x")
        check_eq(p[0], 500, "a hook that returned without answering")
        where = "10-hook.lua:%d" % HOOK_LINE
        check(sw.wait_log("returned without answering", 3), "nothing logged\n%s" % sw.log_tail())
        line = [ln for ln in sw.log().splitlines() if "returned without answering" in ln][0]
        check(where in line, "the log line lacks %r: %r" % (where, line))
        # Only a provisional answer is not an answer either: 180, then 500.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            s.sendto(sw_request(sw, "ring", "MESSAGE", b"", "udp", []), ("127.0.0.1", sw.port))
            s.settimeout(3)
            statuses = []
            while not statuses or statuses[-1] < 200:
                statuses.append(parse_response(s.recvfrom(65535)[0])[0])
        finally:
            s.close()
        check_eq(statuses, [180, 500], "a hook that only rang")


def test_reply_once():
    with hook_switch() as sw:
        p = message(sw, "twice", "x")
        check_eq(p[0], 202, "the first reply")
        rc, out, err = sw.ctl('return kv.get("twice")')
        parts = out.rstrip("\n").split("|")
        check_eq(len(parts), 6, "kv twice: %r" % out)
        check_eq(parts[0], "false", "reply(99) raised")
        check("100 to 699" in parts[1], "reply(99) error: %r" % parts[1])
        check_eq(parts[2], "false", "a bad header name raised")
        check("'headers'" in parts[3], "bad header name error: %r" % parts[3])
        check_eq(parts[4], "false", "the second final reply raised")
        check("already answered" in parts[5], "second reply error: %r" % parts[5])
        p = message(sw, "readonly", "x")
        check(hdr(p, "X-Readonly").startswith("false") and "read-only" in hdr(p, "X-Readonly"),
              "writing req.method: %r" % hdr(p, "X-Readonly"))


def test_request_headers_compact_forms():
    """A MESSAGE written with compact headers (v f t i m c l), two Via lines
    (one of them carrying two values), a repeated header and a user=phone
    From: the hook reads it by full and compact names."""
    with hook_switch() as sw:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            lp = s.getsockname()[1]
            body = b"compact hello"
            raw = "\r\n".join([
                "MESSAGE sip:headers@127.0.0.1:%d;transport=udp SIP/2.0" % sw.port,
                "v: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-cmp1;rport" % lp,
                "v: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bK-cmp2, "
                "SIP/2.0/UDP 10.2.2.2:5064;branch=z9hG4bK-cmp3",
                "Max-Forwards: 70",
                'f: "Alice A" <sip:+15551234@example.org;user=phone>;tag=ftag1',
                "t: <sip:headers@127.0.0.1>",
                "i: compact-call-1@127.0.0.1",
                "CSeq: 9 MESSAGE",
                "m: <sip:alice@127.0.0.1:%d>" % lp,
                "X-Multi: a",
                "x-multi: b",
                "c: text/plain",
                "l: %d" % len(body),
                "", ""]).encode() + body
            s.sendto(raw, ("127.0.0.1", sw.port))
            s.settimeout(3)
            reply, _ = s.recvfrom(65535)
        finally:
            s.close()
        p = parse_response(reply)
        check(p is not None and p[0] == 200, "answer to the compact MESSAGE: %r" % reply)
        got = {k: v[0] for k, v in p[1].items() if k.startswith("x-")}
        want = {
            "x-from": '"Alice A" <sip:+15551234@example.org;user=phone>;tag=ftag1',
            "x-f": '"Alice A" <sip:+15551234@example.org;user=phone>;tag=ftag1',
            "x-to-eq": "true",
            "x-vias": "3",
            "x-v": "3",
            "x-via2": "SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bK-cmp2",
            "x-call-id": "compact-call-1@127.0.0.1",
            "x-call-id-eq": "true",
            "x-contact": "<sip:alice@127.0.0.1:%d>" % lp,
            "x-ct": "text/plain",
            "x-c": "text/plain",
            "x-l": str(len(body)),
            "x-len": str(len(body)),
            "x-multi": "a+b",
            "x-none": "nil 0",
            "x-body": "compact hello",
            "x-uri": "sip:headers@127.0.0.1:%d;transport=udp" % sw.port,
            "x-ruri": "headers@127.0.0.1:%d udp" % sw.port,
            "x-from-parsed": "+15551234|example.org|ftag1|phone",
            "x-to-parsed": "headers|nil",
            "x-contact-port": str(lp),
            "x-cseq": "9",
            "x-status": "nil",
        }
        for k in sorted(want):
            check_eq(got.get(k), want[k], "the hook's %s" % k)
        # The display name (sofia keeps its quotes).
        check("Alice A" in (got.get("x-from-display") or ""), "From display: %r"
              % got.get("x-from-display"))


if __name__ == "__main__":
    run_tests(globals())
