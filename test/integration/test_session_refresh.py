"""Session timers (RFC 4028) that run for over a minute, each leg on its own:

- a carrier that asks the switch to refresh (refresher=uac in its 200) gets
  an UPDATE every session_ttl / session_update_segment seconds (less up to a
  fifth of jitter), or, when it does not allow UPDATE, a re-INVITE offering
  the caller's SDP unchanged;
- a caller that refreshes its own session (a re-INVITE with the same SDP)
  is answered by the switch with the carrier's SDP and keeps its call past
  the expiry of its first session interval;
- no refresh reaches the other leg (each SIPp side fails on any request it
  does not expect).

Two calls run at once, so the file takes about 75 s.
"""

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, cdr, check_cdr, mapping, routing,
                         sipp_timeline, switch_policy, wait_cdrs, wait_done)

TTL, SEGMENT, EARLY = 90, 2, 30
LONG = ["-timeout", "150"]


def first(timeline, direction, prefix, after=0.0):
    for t, d, line in timeline:
        if d == direction and line.startswith(prefix) and t > after:
            return t
    return None


def test_both_legs_refresh_and_no_refresh_is_relayed():
    with carrier("call_uas_timer_update.xml", extra=LONG) as upd, \
            carrier("call_uas_timer_reinvite.xml", extra=LONG) as reinv:
        pol = (switch_policy(session_ttl=TTL, session_update_segment=SEGMENT,
                             session_timeout_early_hangup=EARLY) + mapping() +
               routing("upd", upd.port, prefixes=("1",)) +
               routing("reinv", reinv.port, prefixes=("2",)))
        with Switch({"10-calls.lua": pol}) as sw:
            # Call 1: the caller refreshes after 20 s and hangs up 50 s later,
            # 70 s after the answer: its first session (90 s, hung up 30 s
            # early) would have ended at 60 s without the refresh.
            uac1 = caller(sw, "call_uac_timer.xml", number="1555", code=20000,
                          hold_ms=50000, extra=LONG)
            # Call 2: a caller without timers, hanging up after 52 s.
            uac2 = caller(sw, "call_uac.xml", number="2555", hold_ms=52000, extra=LONG)
            uac1.start()
            uac2.start()
            for name, uac in (("timer caller", uac1), ("plain caller", uac2)):
                rc = uac.wait(120)
                if rc != 0:
                    uac.kill()
                    check(False, "%s exited %r\n%s\n%s" % (name, rc, uac.report(),
                                                          sw.log_tail(80)))
            wait_done(upd, sw)
            wait_done(reinv, sw)

            # The switch refreshed each carrier once, about ttl/segment after
            # the answer (the ACK), with a jitter of at most a fifth.
            every = TTL / SEGMENT
            for name, peer, method in (("upd", upd, "UPDATE"), ("reinv", reinv, "INVITE")):
                tl = sipp_timeline(peer)
                ack = first(tl, "received", "ACK")
                ref = first(tl, "received", method, after=ack or 0)
                check(ack and ref, "%s: no %s refresh seen: %r" % (name, method, tl))
                late = ref - ack
                check(every * 0.8 - 1.5 <= late <= every + 1.5,
                      "%s: %s refresh %.1f s after the answer, want %.0f s less up to a "
                      "fifth" % (name, method, late, every))
                refreshes = [x for x in tl if x[1] == "received" and x[2].startswith(method)]
                check_eq(len(refreshes), 2 if method == "INVITE" else 1,
                         "%s: %s requests received (INVITE and refresh)" % (name, method))

            wait_cdrs(sw, 2)
            recs = {r["routing_gateway"]: r for r in (cdr(sw, 1), cdr(sw, 2))}
            check_cdr(recs.get("upd"), hangup="caller", status=200)
            check_cdr(recs.get("reinv"), hangup="caller", status=200)
            check(recs["upd"]["duration"] >= 67,
                  "the refreshing caller's call lasted %r s" % recs["upd"]["duration"])
            check_eq(calls_count(sw), 0, "calls")


if __name__ == "__main__":
    run_tests(globals())
