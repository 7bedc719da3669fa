"""A late-offer caller that never ACKs, with the default resend interval
(T1 = 500 ms). The switch holds its ACK to the carrier for the caller's
answer; when nta gives up on the caller's ACK (timer H, 64*T1 = 32 s) the
carrier still gets a bare ACK, then both sides a BYE. nta's timer D (the
end of our INVITE to the carrier) is also 32 s here and fires first: the
switch keeps that INVITE until the held ACK has gone, since nta finds the
INVITE's branch for the ACK in it (and used to abort the switch when it
was gone). One test of about 33 s, in a file of its own.
"""

import os

from harness import Switch, check, check_eq, run_tests, scratch_dir
from calls_peers import (caller, calls_count, carrier, check_cdr, mapping, routing, scenario,
                         switch_policy, wait_cdrs, wait_done)


def test_late_offer_never_acked_at_default_t1():
    # The caller waits for its BYE past 32 s (the scenario's 15 s is for T1 100 ms).
    with open(scenario("call_uac_late_noack.xml")) as f:
        text = f.read()
    check('timeout="15000"' in text, "call_uac_late_noack.xml waits 15 s for its BYE")
    uac_path = os.path.join(scratch_dir("scenario"), "call_uac_late_noack_45s.xml")
    with open(uac_path, "w") as f:
        f.write(text.replace('timeout="15000"', 'timeout="45000"'))
    pol = switch_policy(resend_interval=500) + mapping()
    with carrier("call_uas_late_noack.xml", extra=["-timeout", "60"]) as uas, \
            Switch({"10-calls.lua": pol + routing("carrier", uas.port)}) as sw:
        uac = caller(sw, uac_path, extra=["-timeout", "60"])
        uac.start()
        check_eq(uac.wait(50), 0, "the vanished caller got a BYE")
        wait_done(uas, sw)  # a bare ACK, then the BYE
        check(sw.proc.poll() is None, "the switch is still up\n%s" % sw.log_tail(20))
        rec = wait_cdrs(sw, 1)
        check_cdr(rec, status=200, reason="OK", hangup="switch", routing_gateway="carrier",
                  caller="1001", callee="1555", routed_callee="1555", mapping_gateway="cust")
        check(rec["duration"] in (31, 32, 33, 34), "CDR duration %r" % rec["duration"])
        check_eq(calls_count(sw), 0, "calls")


if __name__ == "__main__":
    run_tests(globals())
