"""The endpoint registrar against SIPp with digest auth (SIPp's
[authentication]): success, refresh, removal, a wrong password, an unknown
user answered like a wrong password, suspension after the retry count and
its end, NAT expiry (a Contact other than the source), replace on and off,
a stale nonce.

SIPp answers only the first challenge of a 401 and knows only MD5; the
switches here keep the default endpoint_digest ("md5"), which it takes."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, free_port, run_tests  # noqa: E402
from peers import Sipp  # noqa: E402
from test_registrar_auth import accounts_policy, endpoints, env  # noqa: E402


def sipp(sw, scenario, user, password=None, contact_host="127.0.0.1", expires=300,
         port=None, expect_rc=0, timeout=20):
    """Run one SIPp call of `scenario` as `user`; its local port."""
    password = password if password is not None else "pw%s" % user
    port = port or free_port()
    csv = os.path.join(sw.dir, "users-%d.csv" % port)
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n%s;[authentication username=%s password=%s];%s;%d;\n"
                % (user, user, password, contact_host, expires))
    with Sipp(scenario, port=port, remote="127.0.0.1:%d" % sw.port,
              extra=["-inf", csv]) as s:
        rc = s.wait(timeout)
        check(rc == expect_rc, "sipp %s as %s: rc %r, expected %d\n%s\n%s"
              % (scenario, user, rc, expect_rc, s.report(), sw.log_tail()))
    return port


def policy(**sip):
    return accounts_policy(**sip)


def test_register_refresh_remove():
    with Switch(policy(endpoint_expire=600)) as sw:
        port1 = port = sipp(sw, "regsrv_register.xml", "1001", expires=300)
        b = endpoints(sw, "1001")
        check_eq(len(b), 1, "bindings after register and refresh: %r" % b)
        check_eq(b[0]["contact"], "sip:1001@127.0.0.1:%d" % port, "contact")
        check_eq(b[0]["source"], "127.0.0.1:%d" % port, "source")
        check(295 <= b[0]["expires"] <= 300, "expires %r" % b[0])
        check_eq(b[0]["nat"], False, "nat")
        # The refresh used the cached nonce with nonce-count 2: accepted.
        check("nonce-count" not in sw.log(), "a nonce-count was refused\n%s" % sw.log_tail())
        # Asking for more than endpoint_expire gets endpoint_expire.
        port = sipp(sw, "regsrv_register.xml", "1002", expires=7200)
        b = endpoints(sw, "1002")
        check(595 <= b[0]["expires"] <= 600, "clamped to endpoint_expire: %r" % b)
        # Removal (Expires: 0, the same Contact on another Call-ID); the 200
        # lists no Contact.
        sipp(sw, "regsrv_unregister.xml", "1001", port=port1)
        check_eq(endpoints(sw, "1001"), [], "bindings after Expires: 0")


def test_wrong_password_and_unknown_user():
    with Switch(policy(endpoint_register_retry=10)) as sw:
        sipp(sw, "regsrv_wrong.xml", "1001", password="not-it")
        sipp(sw, "regsrv_wrong.xml", "7777", password="pw7777")
        check_eq(endpoints(sw, "1001"), [], "bindings after a wrong password")
        # Both answers are 401 challenges (regsrv_wrong.xml checks it); and
        # 7777 is counted like 1001, so neither shows it exists.
        rc, out, err = sw.ctl('return accounts["1001"].failures')
        check_eq(out.strip(), "1", "failures of 1001")


def test_suspension_after_retry_and_its_end():
    with Switch(policy(endpoint_register_retry=2, endpoint_register_suspend=3)) as sw:
        sipp(sw, "regsrv_wrong.xml", "1001", password="bad")
        # The second failure reaches the retry count: answered 403 at once.
        sipp(sw, "regsrv_wrong.xml", "1001", password="bad", expect_rc=1)
        t_suspended = time.monotonic()
        check(sw.wait_log("account 1001 suspended for 3 s", 2), "no suspension logged")
        # Now even the right password, and another account from the same
        # source, get 403.
        sipp(sw, "regsrv_suspended.xml", "1001")
        sipp(sw, "regsrv_suspended.xml", "1002")
        rc, out, err = sw.ctl("return suspensions")
        check("account" in out and "1001" in out and "127.0.0.1" in out,
              "suspensions view:\n%s" % out)
        rc, out, err = sw.ctl("return accounts")
        line = [x for x in out.splitlines() if x.startswith("1001 ")]
        check(line and "no" not in line[0].split()[2], "accounts view: %r" % out)
        # After endpoint_register_suspend seconds, registration works again.
        time.sleep(max(0, 3.2 - (time.monotonic() - t_suspended)))
        sipp(sw, "regsrv_register.xml", "1001")
        check_eq(len(endpoints(sw, "1001")), 1, "binding after the suspension")


def test_nat_expiry():
    with Switch(policy(endpoint_expire=600, endpoint_nat_expire=30)) as sw:
        port = sipp(sw, "regsrv_register.xml", "1001", contact_host="10.0.0.1", expires=3600)
        b = endpoints(sw, "1001")
        check_eq(len(b), 1, "bindings")
        check_eq(b[0]["contact"], "sip:1001@10.0.0.1:%d" % port, "contact")
        check_eq(b[0]["nat"], True, "nat")
        check_eq(b[0]["source"], "127.0.0.1:%d" % port, "source (where it really is)")
        check(25 <= b[0]["expires"] <= 30, "endpoint_nat_expire granted: %r" % b)


def test_replace_on_and_off():
    with Switch(policy(endpoint_register_replace=True)) as sw:
        p1 = sipp(sw, "regsrv_register.xml", "1001")
        p2 = sipp(sw, "regsrv_register.xml", "1001")
        b = endpoints(sw, "1001")
        check_eq([x["contact"] for x in b], ["sip:1001@127.0.0.1:%d" % p2],
                 "replace on: only the newest binding (first was port %d)" % p1)
    with Switch(policy(endpoint_register_replace=False)) as sw:
        p1 = sipp(sw, "regsrv_register.xml", "1001")
        p2 = sipp(sw, "regsrv_register.xml", "1001")
        b = endpoints(sw, "1001")
        check_eq(sorted(x["contact"] for x in b),
                 sorted("sip:1001@127.0.0.1:%d" % p for p in (p1, p2)),
                 "replace off: both bindings")


def test_stale_nonce():
    with env(MOON_NONCE_TTL=1):
        with Switch(policy()) as sw:
            sipp(sw, "regsrv_stale.xml", "1001")
            check_eq(len(endpoints(sw, "1001")), 1, "binding after the stale round")


if __name__ == "__main__":
    run_tests(globals())
