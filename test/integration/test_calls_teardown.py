"""Calls ended by the switch: call:hangup() from the REPL, SIGTERM, the
maximum call duration (sip.max_call_duration) and a caller that never ACKs
the answer all send BYE on both legs
(each SIPp side fails unless it gets its BYE), and the CDR says the switch
hung up.
"""

import time

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, check_cdr, ctl_value, mapping, routing,
                         switch_policy, wait_cdrs, wait_done, wait_until)


def start_call(sw):
    uac = caller(sw, "call_uac_wait_bye.xml")
    uac.start()
    wait_until(lambda: calls_count(sw) == 1 and
               ctl_value(sw, "return calls.list()[1].state") == "answered", 5,
               what="the call answered")
    return uac


def test_hangup_from_the_repl():
    with carrier("call_uas.xml") as uas, \
            Switch({"10-calls.lua": switch_policy() + mapping() + routing("c", uas.port)}) as sw:
        uac = start_call(sw)
        check_eq(ctl_value(sw, "return calls.list()[1].caller"), "1001", "call.caller")
        check_eq(ctl_value(sw, "local c = calls.list()[1] c:hangup() return c.state"), "ended",
                 "state after hangup")
        check_eq(uac.wait(10), 0, "caller got its BYE")
        wait_done(uas, sw)
        # Hung up from the REPL after the answer: the answer's status and reason.
        check_cdr(wait_cdrs(sw, 1), hangup="switch", status=200, reason="OK")
        check_eq(calls_count(sw), 0, "calls")


def test_sigterm_byes_every_call():
    with carrier("call_uas.xml") as uas:
        sw = Switch({"10-calls.lua": switch_policy() + mapping() + routing("c", uas.port)})
        with sw:
            uac = start_call(sw)
            check_eq(sw.stop(), 0, "exit code")
            check_eq(uac.wait(10), 0, "caller got its BYE")
            wait_done(uas, sw)


def test_max_call_duration_ends_the_call():
    pol = switch_policy(max_call_duration=2) + mapping()
    with carrier("call_uas.xml") as uas, \
            Switch({"10-calls.lua": pol + routing("c", uas.port)}) as sw:
        uac = start_call(sw)
        t0 = time.time()
        check_eq(uac.wait(10), 0, "caller got its BYE")
        took = time.time() - t0
        check(1.0 <= took <= 4.0, "ended %.1f s after the answer (limit 2 s)" % took)
        wait_done(uas, sw)
        rec = wait_cdrs(sw, 1)
        check_cdr(rec, hangup="switch", status=200)
        check(rec["duration"] in (1, 2, 3), "CDR duration %r" % rec["duration"])
        check_eq(calls_count(sw), 0, "calls")
        check("maximum call duration" in sw.log(), "logged")


def test_missing_ack_ends_the_call():
    # resend_interval 100 ms: nta gives up on the ACK after 64 * T1 = 6.4 s.
    pol = switch_policy(resend_interval=100) + mapping()
    with carrier("call_uas.xml") as uas, \
            Switch({"10-calls.lua": pol + routing("c", uas.port)}) as sw:
        uac = caller(sw, "call_uac_noack.xml")
        uac.start()
        check_eq(uac.wait(20), 0, "the vanished caller got a BYE")
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), hangup="switch", status=200)
        check_eq(calls_count(sw), 0, "calls")
        check("never ACKed" in sw.log(), "logged")


if __name__ == "__main__":
    run_tests(globals())
