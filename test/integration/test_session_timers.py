"""Session timers (RFC 4028), the short cases: 422 Session Interval Too
Small in both directions, what endpoints without timers get (the
no_timer_reinvite_interval limit, moonswitch's in-dialog OPTIONS), and the
policy's checks of the new parameters. The refreshes themselves are in
test_session_refresh.py and test_session_dead.py (a minute each)."""

import time

from harness import Switch, check, check_eq, run_check, run_tests
from calls_peers import (caller, calls_count, carrier, check_cdr, mapping, routing, run,
                         sipp_log, switch_policy, wait_cdrs, wait_done)


def test_caller_below_our_min_se_gets_422():
    pol = switch_policy(session_min_se=120) + mapping() + routing("c", 9)
    with Switch({"10-calls.lua": pol}) as sw:
        run(caller(sw, "call_uac_timer_422.xml"), sw)
        check_eq(calls_count(sw), 0, "calls")
        check("below our Min-SE 120: 422" in sw.log(), "the 422 logged")


def test_carrier_422_gets_the_invite_again_with_its_min_se():
    with carrier("call_uas_timer_422.xml") as uas:
        pol = switch_policy(session_ttl=120) + mapping() + routing("c", uas.port)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw), sw)
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller")
            invites = [m for m in sipp_log(uas).split("\n") if m.startswith("INVITE ")]
            check_eq(len(invites), 2, "INVITEs at the carrier")


def test_non_timer_call_ends_at_no_timer_reinvite_interval():
    with carrier("call_uas.xml") as uas:
        pol = switch_policy(no_timer_reinvite_interval=2) + mapping() + routing("c", uas.port)
        with Switch({"10-calls.lua": pol}) as sw:
            uac = caller(sw, "call_uac_wait_bye.xml")
            uac.start()
            t0 = time.time()
            check_eq(uac.wait(10), 0, "the caller got its BYE")
            took = time.time() - t0
            check(1.0 <= took <= 4.5, "ended %.1f s after the INVITE (limit 2 s)" % took)
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), hangup="switch", status=200,
                      reason="Maximum Call Duration")


def test_legs_with_timers_are_not_limited():
    # Both legs run a session timer: the 2 s no-timer limit does not apply.
    # The caller also refreshes after 3 s, answered by the switch alone (the
    # carrier fails on a relayed re-INVITE).
    with carrier("call_uas_timer_norefresh.xml") as uas:
        pol = (switch_policy(session_ttl=90, no_timer_reinvite_interval=2) + mapping() +
               routing("c", uas.port))
        with Switch({"10-calls.lua": pol}) as sw:
            t0 = time.time()
            run(caller(sw, "call_uac_timer.xml", code=3000, hold_ms=2000), sw, timeout=20)
            check(time.time() - t0 >= 4.5, "the call lasted its 5 s")
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), hangup="caller", status=200)


def test_options_to_non_timer_legs_end_a_dead_dialog():
    # moonswitch's own probe: an in-dialog OPTIONS every 5 s to each leg
    # without a timer; the carrier answers 481, the dialog is gone.
    with carrier("call_uas_options481.xml") as uas:
        pol = switch_policy(no_timer_options_interval=5) + mapping() + routing("c", uas.port)
        with Switch({"10-calls.lua": pol}) as sw:
            uac = caller(sw, "call_uac_options_bye.xml")
            uac.start()
            t0 = time.time()
            rc = uac.wait(15)
            check(rc == 0, "the caller exited %r\n%s\n%s" % (rc, uac.report(), sw.log_tail()))
            took = time.time() - t0
            check(4.0 <= took <= 7.0, "ended %.1f s after the INVITE (OPTIONS every 5 s)" % took)
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), hangup="switch", status=200,
                      reason="In-dialog OPTIONS Failed")


def test_policy_checks():
    cases = [
        ("switch { sip = { max_call_duration = 60, no_timer_reinvite_interval = 60 } }\n",
         "another name for 'no_timer_reinvite_interval'"),
        ("switch { sip = { session_ttl = 60 } }\n", "session_ttl"),
        ("switch { sip = { session_ttl = 120, session_min_se = 300 } }\n",
         "session_min_se 300 is above sip.session_ttl 120"),
        ("switch { sip = { session_update_segment = 1 } }\n", "session_update_segment"),
        ("switch { sip = { e164_display_from = \"full\" } }\n", "e164_display_from"),
    ]
    for text, want in cases:
        rc, out, _ = run_check({"00-switch.lua": text})
        check(rc == 1 and want in out, "%r: rc %d, %s" % (text, rc, out))
    ok = ("switch { sip = { session_ttl = false, max_call_duration = 60, timeout_invite = 5, "
          "nat_keep_alive_period = 20, authentication_retry = 3, publish_expire = 600, "
          "e164_display_from = \"caller\", no_timer_options_interval = 30 } }\n")
    rc, out, _ = run_check({"00-switch.lua": ok})
    check_eq(rc, 0, "rc of a good policy (%s)" % out)


if __name__ == "__main__":
    run_tests(globals())
