"""Calls through the B2BUA, the basic cases: a call held and hung up by the
caller, one hung up by the callee, a busy callee, no route, an unknown
source, the caller's CANCEL, and the CANCEL crossing the carrier's 200 OK.
Each case checks the CDR it leaves.
"""

import time

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, check_cdr, ctl_value, mapping, routing,
                         run, switch_policy, wait_cdrs, wait_done, wait_until)


def policies(gw_port, **gw):
    return {"10-calls.lua": switch_policy() + mapping() + routing("carrier", gw_port, **gw)}


def test_caller_hangs_up_after_hold():
    with carrier("call_uas.xml") as uas, Switch(policies(uas.port)) as sw:
        uac = caller(sw, hold_ms=3000)
        uac.start()
        # While the call is held: one call, counted on the gateway.
        wait_until(lambda: calls_count(sw) == 1, 5, what="calls.count() == 1")
        wait_until(lambda: ctl_value(sw, 'return calls.list()[1].state') == "answered", 5,
                   what="the call answered")
        check_eq(ctl_value(sw, 'return gateways["carrier"].calls'), "1", "gateway calls")
        check_eq(uac.wait(15), 0, "caller sipp exit code")
        wait_done(uas, sw)
        rec = wait_cdrs(sw, 1)
        check_cdr(rec, caller="1001", callee="1555", original_callee="1555",
                  routed_callee="1555", mapping_gateway="cust", routing_gateway="carrier",
                  status=200, reason="OK", hangup="caller")
        check(rec["answer"] is not None, "answer time missing: %r" % rec)
        check(rec["duration"] >= 2, "duration %r, the call was held 3 s" % rec["duration"])
        check(rec["start"] <= rec["answer"] <= rec["stop"], "times out of order: %r" % rec)
        check_eq(calls_count(sw), 0, "calls after the hangup")
        check_eq(ctl_value(sw, 'return gateways["carrier"].calls'), "0", "gateway calls")


def test_callee_hangs_up():
    with carrier("call_uas_bye.xml", extra=["-d", "300"]) as uas, \
            Switch(policies(uas.port)) as sw:
        run(caller(sw, "call_uac_wait_bye.xml"), sw)
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="callee", routing_gateway="carrier")


def test_busy_callee_goes_back_to_the_caller():
    with carrier("call_uas_fail.xml", code=486) as uas, Switch(policies(uas.port)) as sw:
        run(caller(sw, "call_uac_fail.xml", code=486), sw)
        wait_done(uas, sw)
        rec = wait_cdrs(sw, 1)
        check_cdr(rec, status=486, reason="Refused", hangup="callee", answer=None, duration=0,
                  routing_gateway="carrier")


def test_no_route_gives_503():
    # The only gateway serves prefix 9; the callee starts with 1.
    with Switch(policies(9, prefixes=["9"])) as sw:
        run(caller(sw, "call_uac_fail.xml", code=503), sw)
        check_cdr(wait_cdrs(sw, 1), status=503, reason="No Route", hangup="switch",
                  routing_gateway="", answer=None)


def test_unknown_source_gets_403():
    pol = {"10-calls.lua": switch_policy() + mapping(addresses=["192.0.2.1"]) +
           routing("carrier", 9)}
    with Switch(pol) as sw:
        run(caller(sw, "call_uac_fail.xml", code=403), sw)
        time.sleep(0.2)
        check_eq(ctl_value(sw, "return cdrs.count()"), "0", "CDRs of refused INVITEs")


def test_cancel_before_answer():
    with carrier("call_uas_cancel.xml") as uas, Switch(policies(uas.port)) as sw:
        run(caller(sw, "call_uac_cancel.xml"), sw)
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=487, reason="Request Terminated", hangup="caller",
                  answer=None)
        check_eq(calls_count(sw), 0, "calls after the CANCEL")


def test_cancel_crossing_200():
    # The carrier's 200 crosses the CANCEL: the switch ACKs and BYEs it
    # (the carrier scenario fails without both), the caller gets 487.
    with carrier("call_uas_cancel_race.xml") as uas, Switch(policies(uas.port)) as sw:
        run(caller(sw, "call_uac_cancel.xml"), sw)
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=487, hangup="caller")
        check_eq(calls_count(sw), 0, "calls after the race")


if __name__ == "__main__":
    run_tests(globals())
