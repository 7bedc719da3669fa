"""NAT keepalive in options mode against SIPp, and the keepalive settings
(switch.sip endpoint_keepalive, _interval, _misses) refused by --check when
out of range. CRLF keepalives are in test_registrar_crlf.py.

SIPp registers with digest from a port (Contact 10.0.0.1, so the binding is
behind NAT), stays 11 s answering the switch's OPTIONS (-aa), then exits:
the keepalives that follow find the port closed (ICMP), and the binding goes
after endpoint_keepalive_misses of them."""

import glob
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, free_port, run_check, run_tests  # noqa: E402
from peers import Sipp, wait_until  # noqa: E402
from test_registrar_auth import UA, accounts_policy  # noqa: E402
from test_registrar_crlf import datagrams  # noqa: E402

HEADER = "-- test policy\n-- (comments keep the definitions off line 1)\n\n"  # 3 lines


def bindings(sw, aor):
    """endpoints(aor) as a list of (source, nat, keepalive_misses)."""
    rc, out, err = sw.ctl('local t = {} for _, b in ipairs(endpoints(%r)) do '
                          't[#t + 1] = b.source .. " " .. tostring(b.nat) .. " " .. '
                          'b.keepalive_misses end return table.concat(t, "\\n")' % aor)
    check(rc == 0, "endpoints(%r): %s" % (aor, err))
    rows = []
    for line in out.split("\n"):
        if line.strip():
            source, nat, misses = line.split()
            rows.append((source, nat == "true", int(misses)))
    return rows


def test_options_answered_keeps_silent_removes():
    # SIPp answers only the first challenge and knows only MD5.
    pol = accounts_policy(endpoint_digest="md5,sha256", endpoint_keepalive="options",
                          endpoint_keepalive_interval=5, endpoint_keepalive_misses=2)
    with Switch(pol) as sw:
        port = free_port()
        csv = os.path.join(sw.dir, "users.csv")
        with open(csv, "w") as f:
            f.write("SEQUENTIAL\n1001;[authentication username=1001 password=pw1001];"
                    "10.0.0.1;60;\n")
        with Sipp("regsrv_keepalive.xml", port=port, remote="127.0.0.1:%d" % sw.port,
                  extra=["-inf", csv, "-aa"]) as s:
            wait_until(lambda: bindings(sw, "1001"), 5, what="the SIPp binding")
            check_eq(bindings(sw, "1001"), [("127.0.0.1:%d" % port, True, 0)], "binding")
            rc = s.wait(20)
            check_eq(rc, 0, "sipp exit\n%s\n%s" % (s.report(), sw.log_tail()))
            log = ""
            for name in glob.glob(os.path.join(s.dir, "*_messages.log")):
                with open(name, errors="replace") as f:
                    log += f.read()
        # SIPp answered two keepalives in its 11 s, and the binding stayed.
        options = len(re.findall(r"^OPTIONS sip:1001@10\.0\.0\.1:%d" % port, log, re.M))
        check(options >= 2, "OPTIONS SIPp received: %d\n%s" % (options, log[-3000:]))
        check_eq(bindings(sw, "1001"), [("127.0.0.1:%d" % port, True, 0)],
                 "binding after the answered keepalives")
        # The port is closed now: one miss leaves the binding with
        # keepalive_misses 1, the second removes it.
        t0 = time.monotonic()
        seen = set()

        def gone():
            rows = bindings(sw, "1001")
            for r in rows:
                seen.add(r[2])
            return not rows
        # (A miss is an ICMP error at once, or nta's timer F, 6.4 s here.)
        wait_until(gone, 30, interval=0.2, what="the binding to go after two misses")
        check(1 in seen, "keepalive_misses 1 never seen before removal: %r" % seen)
        check(time.monotonic() - t0 > 3, "removed too soon for two misses 5 s apart")
        check(sw.wait_log("keepalives unanswered", 1), "reason not logged\n%s" % sw.log_tail())


def test_options_leave_from_the_register_listener():
    # Two UDP listeners: nta would send a request from the first one, and a
    # NAT lets the OPTIONS in only from the IP:port the REGISTER went to.
    pol = accounts_policy(endpoint_keepalive="options", endpoint_keepalive_interval=5)
    second = free_port()
    with Switch(pol, extra_args=["--listen", "udp:127.0.0.1:%d" % second]) as sw:
        with UA(second, "1001", contact_host="10.0.0.1") as ua2, \
                UA(sw.port, "1002", contact_host="10.0.0.2") as ua1:
            check_eq(ua2.register(expires=60)[0], 200, "registration to the second listener")
            check_eq(ua1.register(expires=60)[0], 200, "registration to the first listener")
            for ua, port in ((ua2, second), (ua1, sw.port)):
                got = datagrams(ua, 7, until=lambda out: out[-1][1].startswith(b"OPTIONS "))
                options = [addr for _, d, addr in got if d.startswith(b"OPTIONS ")]
                check(options, "no OPTIONS to %s in 7 s: %r\n%s" % (ua.user, got,
                                                                    sw.log_tail()))
                check_eq(options[0], ("127.0.0.1", port), "OPTIONS sender for %s" % ua.user)
            # Answered (to the listener it came from): no miss counted.
            time.sleep(0.3)
            check_eq(bindings(sw, "1001"), [("127.0.0.1:%d" % ua2.lport, True, 0)],
                     "binding behind the second listener")


def test_check_refuses_bad_settings():
    cases = [('endpoint_keepalive = "ping"', ["endpoint_keepalive", '"options"', "ping"]),
             ("endpoint_keepalive_interval = 2", ["endpoint_keepalive_interval", "2"]),
             ("endpoint_keepalive_interval = 3601", ["endpoint_keepalive_interval"]),
             ("endpoint_keepalive_misses = 0", ["endpoint_keepalive_misses"]),
             ("endpoint_keepalive_misses = 21", ["endpoint_keepalive_misses"])]
    for field, words in cases:
        rc, out, _ = run_check({"00-switch.lua": HEADER + "switch { sip = { %s } }\n" % field})
        check_eq(rc, 1, "--check exit for %s (output %r)" % (field, out))
        check(re.search(r"00-switch\.lua:4\b", out), "no file:line for %s: %r" % (field, out))
        for w in words:
            check(w in out, "%r not in the message for %s: %r" % (w, field, out))
    rc, out, _ = run_check({"00-switch.lua": HEADER + 'switch { sip = { endpoint_keepalive = '
                            '"crlf", endpoint_keepalive_interval = 5, '
                            'endpoint_keepalive_misses = 20 } }\n'})
    check_eq(rc, 0, "--check on good keepalive settings (output %r)" % out)


if __name__ == "__main__":
    run_tests(globals())
