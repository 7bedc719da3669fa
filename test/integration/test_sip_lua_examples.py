"""The Lua SIP examples run for real: examples/gateway-ping pings its
gateways (Kamailio and one that never answers) and logs round-trip times;
examples/message-answer answers MESSAGE requests, locally and relayed."""

import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SOURCE_DIR, Switch, check, check_eq, parse_response,  # noqa: E402
                     run_tests, udp_exchange)
from peers import Kamailio, SilentRegistrar, wait_until  # noqa: E402

EXAMPLES = os.path.join(SOURCE_DIR, "examples")


def example_files(name):
    d = os.path.join(EXAMPLES, name)
    files = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".lua"):
            with open(os.path.join(d, f)) as fh:
                files[f] = fh.read()
    return files


def lua(sw, chunk):
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "moonctl -e failed (rc %d): %s\n%s" % (rc, err, sw.log_tail(20)))
    return out.rstrip("\n").split("\n") if out else []


def test_gateway_ping():
    with Kamailio() as k, SilentRegistrar() as silent:
        files = example_files("gateway-ping")
        # The example's own ping policy, with gateways of this machine.
        files["10-gateways.lua"] = (
            'ping_gateways = { "kam", "silent" }\n'
            'routing_gateway "kam" { address = "127.0.0.1:%d" }\n'
            'routing_gateway "silent" { address = "127.0.0.1:%d" }\n'
            "ping_interval = 1\n"
            "ping_timeout = 0.5\n" % (k.port, silent.port))
        with Switch(files) as sw:
            check(sw.wait_log("ping     kam: 200 OK in", 5),
                  "no round-trip time logged for kam\n%s" % sw.log_tail())
            check(sw.wait_log("ping     silent: 408", 5),
                  "no 408 logged for the silent gateway\n%s" % sw.log_tail())
            out = lua(sw, 'local r = ping_results return r.kam.status, r.kam.rtt_ms, '
                          'r.silent.status, r.silent.rtt_ms')
            check_eq((out[0], out[2]), ("200", "408"), "ping_results statuses")
            check(0 < float(out[1]) < 500, "kam round-trip %s ms" % out[1])
            check(450 <= float(out[3]) < 1500, "silent gateway gave up after %s ms" % out[3])
            # Rounds repeat every second: 3 more rounds in about 3 s.
            n0 = sw.log().count("ping     kam: 200 OK")
            time.sleep(3.2)
            n1 = sw.log().count("ping     kam: 200 OK")
            check(2 <= n1 - n0 <= 4, "%d rounds in 3.2 s with ping_interval = 1" % (n1 - n0))
            check(len(silent.requests()) >= 3, "the silent gateway got %d OPTIONS"
                  % len(silent.requests()))
            line = [ln for ln in sw.log().splitlines() if "ping     kam: 200 OK in" in ln][-1]
            check(re.search(r"in \d+\.\d ms$", line), "log line format: %r" % line)
            # A reload stops the old timer and starts the new policy's.
            check_eq(lua(sw, "return (reload())"), ["true"], "reload")
            n2 = sw.log().count("ping     kam: 200 OK")
            time.sleep(2.2)
            n3 = sw.log().count("ping     kam: 200 OK")
            check(1 <= n3 - n2 <= 3, "%d rounds in 2.2 s after a reload (one timer, not two)"
                  % (n3 - n2))


def message(sw, user, body, ctype="text/plain", method="MESSAGE", timeout=5.0):
    tok = uuid.uuid4().hex[:12]
    body = body.encode()
    lines = ["%s sip:%s@127.0.0.1:%d SIP/2.0" % (method, user, sw.port),
             "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-%s;rport" % tok,
             "Max-Forwards: 70",
             "From: <sip:alice@127.0.0.1:5099>;tag=%s" % tok,
             "To: <sip:%s@127.0.0.1>" % user,
             "Call-ID: %s@127.0.0.1" % tok,
             "CSeq: 1 %s" % method]
    if ctype:
        lines.append("c: %s" % ctype)  # compact form on purpose
    lines.append("Content-Length: %d" % len(body))
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    reply = udp_exchange(sw.port, raw, timeout)
    check(reply is not None, "no answer to %s\n%s" % (method, sw.log_tail()))
    return parse_response(reply)


def test_message_answer():
    with Switch(example_files("message-answer")) as sw:
        st, headers, _ = message(sw, "bob", "hello bob")
        check_eq((st, headers.get("x-message-length")), (200, ["9"]), "a text MESSAGE")
        check_eq(lua(sw, 'return kv.get("message:bob")'), ["hello bob"], "kept in kv")
        check(sw.wait_log("alice -> bob: 9 bytes", 2), "not logged\n%s" % sw.log_tail())
        st, headers, _ = message(sw, "bob", "<x/>", ctype="application/xml")
        check_eq((st, headers.get("accept")), (415, ["text/plain"]), "a non-text MESSAGE")
        check_eq(message(sw, "bob", "x" * 1400)[0], 513, "a long MESSAGE")
        st, headers, _ = message(sw, "bob", "", ctype=None, method="INFO")
        check_eq(st, 405, "INFO")
        check("MESSAGE" in ", ".join(headers.get("allow", [])), "Allow: %r" % headers.get("allow"))
        check("returned without answering" not in sw.log(), "an automatic 500 happened")


def test_message_relayed():
    with Kamailio() as k, SilentRegistrar() as silent:
        files = example_files("message-answer")
        files["05-settings.lua"] = 'message_forward_to = "sip:127.0.0.1:%d"\n' % silent.port
        with Switch(files) as sw:
            t0 = time.monotonic()
            st = message(sw, "carol", "anyone?", timeout=8)[0]
            check_eq(st, 504, "relayed to a server that never answers")
            check(time.monotonic() - t0 >= 2.9, "the relay gave up too early")
            check(wait_until(lambda: silent.requests(), 2), "the relay sent nothing")
            got = silent.requests()[0]["text"]
            check(got.startswith("MESSAGE sip:127.0.0.1:%d" % silent.port) and
                  got.endswith("anyone?") and "X-Original-From: alice" in got,
                  "the relayed MESSAGE: %r" % got)
        # Kamailio (registrar.cfg) answers MESSAGE 405: the answer is relayed.
        files["05-settings.lua"] = 'message_forward_to = "sip:127.0.0.1:%d"\n' % k.port
        with Switch(files) as sw:
            st, headers, _ = message(sw, "carol", "anyone?")
            check_eq((st, headers.get("x-relayed-by")), (405, ["moonswitch"]),
                     "Kamailio's answer relayed")


if __name__ == "__main__":
    run_tests(globals())
