"""What carriers do to a call: ring and never answer (call_progress_timeout
cancels that attempt and the next carrier takes the call), and challenge
the INVITE (a static routing gateway answers with its own username,
auth_username and password).
"""

import hashlib
import re
import time

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, carrier, check_cdr, mapping, routing, run, sipp_log,
                         switch_policy, wait_cdrs, wait_done)


def test_call_progress_timeout_moves_to_the_next_carrier():
    # "ringer" answers 180 and nothing more; after call_progress_timeout it
    # gets a CANCEL (its scenario ends on it) and "good" gets the call.
    with carrier("call_uas_cancel.xml") as ringer, carrier("call_uas.xml") as good:
        pol = switch_policy(call_progress_timeout=2) + mapping() + \
            routing("ringer", ringer.port, priority=1) + routing("good", good.port, priority=2)
        with Switch({"10-calls.lua": pol}) as sw:
            t0 = time.monotonic()
            run(caller(sw), sw, timeout=20)
            took = time.monotonic() - t0
            wait_done(ringer, sw)
            wait_done(good, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="good")
            check("ringer: Call Progress Timeout" in sw.log(), "logged:\n" + sw.log_tail())
            check(took >= 2, "the call was set up after %.1f s, before the timeout" % took)


def test_call_progress_timeout_alone_gives_408():
    with carrier("call_uas_cancel.xml") as ringer:
        pol = switch_policy(call_progress_timeout=1) + mapping() + routing("ringer", ringer.port)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw, "call_uac_fail.xml", code=408), sw, timeout=20)
            wait_done(ringer, sw)
            check_cdr(wait_cdrs(sw, 1), status=408, reason="Call Progress Timeout",
                      routing_gateway="ringer", hangup="switch")


def _md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def test_static_carrier_challenge_answered_with_its_credentials():
    with carrier("call_uas_auth.xml") as uas:
        pol = switch_policy() + mapping() + \
            routing("carrier", uas.port, username="trunk9", auth_username="auth9",
                    password="s3cret")
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw), sw)
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="carrier")
        text = sipp_log(uas)
        invites = [m for m in re.split(r"^(?=[A-Z]+ \S+ SIP/2.0\r?$|SIP/2.0 )", text, flags=re.M)
                   if m.startswith("INVITE ")]
        check_eq(len(invites), 2, "INVITEs at the carrier")
        pa = re.findall(r"^Proxy-Authorization:\s*(.*?)\r?$", invites[1], re.M | re.I)
        check_eq(len(pa), 1, "Proxy-Authorization of the second INVITE")
        params = dict((m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3))
                      for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', pa[0]))
        check_eq(params.get("username"), "auth9", "digest username (auth_username)")
        ha1 = _md5("auth9:carrier.example:s3cret")
        ha2 = _md5("INVITE:%s" % params.get("uri"))
        check_eq(params.get("response"), _md5("%s:moonnonce0123456789:%s" % (ha1, ha2)),
                 "digest response")
        check("s3cret" not in text, "the password went on the wire")


def test_credentials_need_each_other():
    from harness import run_check
    for fields, words in (('username = "u"', "'username' needs field 'password'"),
                          ('password = "p"', "'password' needs field 'username'")):
        rc, out, _ = run_check({"10-x.lua": 'routing_gateway "gw" { address = '
                                '"192.0.2.1:5060", %s }\n' % fields})
        check_eq(rc, 1, "--check of %s" % fields)
        check(words in out, "%r not in %r" % (words, out))


if __name__ == "__main__":
    run_tests(globals())
