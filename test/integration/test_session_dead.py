"""Zombie calls: a carrier that dies mid-call has its call ended on both
legs within the session interval, and the CDR says the switch hung up and
why. Two calls at once (about 65 s):

- "silent" asked the switch to refresh (refresher=uac) and then answers
  nothing: the UPDATE refresh times out (nta's 64 x T1, 6.4 s here) and the
  call ends at once: "Session Refresh Failed";
- "lazy" took the refresher role (refresher=uas) and never refreshes: the
  call ends session_timeout_early_hangup seconds before the session
  expires: "Session Timer Expired".
"""

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, cdr, check_cdr, mapping, routing,
                         switch_policy, wait_cdrs, wait_done)

TTL, EARLY = 90, 30
LONG = ["-timeout", "150"]


def test_dead_carriers_are_hung_up_within_the_session_interval():
    with carrier("call_uas_timer_silent.xml", extra=LONG) as silent, \
            carrier("call_uas_timer_norefresh.xml", extra=LONG) as lazy:
        pol = (switch_policy(session_ttl=TTL, session_timeout_early_hangup=EARLY) +
               mapping() + routing("silent", silent.port, prefixes=("1",)) +
               routing("lazy", lazy.port, prefixes=("2",)))
        with Switch({"10-calls.lua": pol}) as sw:
            uac1 = caller(sw, "call_uac_wait_bye.xml", number="1555", extra=LONG)
            uac2 = caller(sw, "call_uac_wait_bye.xml", number="2555", extra=LONG)
            uac1.start()
            uac2.start()
            for name, uac in (("silent's caller", uac1), ("lazy's caller", uac2)):
                rc = uac.wait(120)
                if rc != 0:
                    uac.kill()
                    check(False, "%s exited %r (it must get the switch's BYE)\n%s\n%s"
                          % (name, rc, uac.report(), sw.log_tail(80)))
            wait_done(silent, sw)
            wait_done(lazy, sw)

            wait_cdrs(sw, 2)
            recs = {r["routing_gateway"]: r for r in (cdr(sw, 1), cdr(sw, 2))}
            check_cdr(recs.get("silent"), hangup="switch", status=200,
                      reason="Session Refresh Failed")
            check_cdr(recs.get("lazy"), hangup="switch", status=200,
                      reason="Session Timer Expired")
            # silent: refreshed at 36..45 s, no answer for 6.4 s.
            d = recs["silent"]["duration"]
            check(41 <= d <= 54, "silent's call lasted %r s, want 42..52" % d)
            # lazy: the session expires at 90 s; hung up 30 s before.
            d = recs["lazy"]["duration"]
            check(58 <= d <= 62, "lazy's call lasted %r s, want 60" % d)
            check(d < TTL, "ended within the session interval")
            check_eq(calls_count(sw), 0, "calls")
            log = sw.log()
            check("session refresh: hanging up" in log, "the refresh failure logged")
            check("session expired" in log, "the expiry logged")


if __name__ == "__main__":
    run_tests(globals())
