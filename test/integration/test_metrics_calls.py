#!/usr/bin/env python3
"""Per-call Prometheus series, counted from real SIPp calls: an answered call
and a refused one through a customer and a carrier, read back from
GET /metrics (moonswitch_calls_total, call_attempts_total, the setup and
duration histograms, calls_active).

Python 3 standard library only. Builds on harness.py, calls_peers.py and
test_metrics.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check_eq, free_port, run_tests  # noqa: E402
from calls_peers import (caller, carrier, mapping, routing, run, wait_cdrs,  # noqa: E402
                         wait_done)
from test_metrics import get, parse, value  # noqa: E402


def policies(metrics_port, gw_port):
    return {"10-calls.lua": 'switch { metrics = "127.0.0.1:%d", sip = { resend_interval = 100, '
                            'invite_timeout = 3 } }\n' % metrics_port
            + mapping() + routing("carrier", gw_port)}


def scrape(mport):
    status, _, body = get(mport)
    check_eq(status, 200, "GET /metrics")
    return parse(body)[1]


def test_calls_counted_by_gateways_and_status():
    mport = free_port()
    with carrier("call_uas.xml") as uas, Switch(policies(mport, uas.port)) as sw:
        run(caller(sw, hold_ms=1200), sw)
        wait_done(uas, sw)
        wait_cdrs(sw, 1)
        s = scrape(mport)
        check_eq(value(s, "moonswitch_calls_total", mapping_gateway="cust",
                       routing_gateway="carrier", status="200"), 1.0, "answered calls")
        check_eq(value(s, "moonswitch_call_attempts_total", routing_gateway="carrier",
                       status="200"), 1.0, "answered attempts")
        check_eq(value(s, "moonswitch_call_setup_seconds_count", routing_gateway="carrier"),
                 1.0, "PDD samples")
        check_eq(value(s, "moonswitch_call_duration_seconds_count",
                       routing_gateway="carrier"), 1.0, "duration samples")
        dur = value(s, "moonswitch_call_duration_seconds_sum", routing_gateway="carrier")
        check_eq(1.0 <= dur < 10.0, True, "duration sum %r for a 1.2 s hold" % dur)
        check_eq(value(s, "moonswitch_calls_active"), 0.0, "calls in progress after")
        # The caller's BYE was answered without a transaction and the
        # carrier's 2xx ACKed without one: both are kept for retransmissions.
        check_eq(value(s, "moonswitch_sip_answer_records") >= 2, True, "answer records")
        check_eq(value(s, "moonswitch_sip_held_bytes", kind="answers") > 0, True,
                 "answer bytes")
        check_eq(value(s, "moonswitch_sip_invites", kind="all"), 0.0, "INVITEs in progress")
        # Responses by status at the transports: the carrier's 100, 180 and
        # 200 (INVITE) and 200 (BYE) in; ours to the caller out.
        for direction in ("in", "out"):
            check_eq(value(s, "moonswitch_sip_responses_total", direction=direction,
                           status="200") >= 2, True, "200s %s" % direction)
            check_eq(value(s, "moonswitch_sip_responses_total", direction=direction,
                           status="180") >= 1, True, "180s %s" % direction)
    with carrier("call_uas_fail.xml", code=486) as uas, \
            Switch(policies(mport, uas.port)) as sw:
        run(caller(sw, "call_uac_fail.xml", code=486), sw)
        wait_done(uas, sw)
        wait_cdrs(sw, 1)
        s = scrape(mport)
        check_eq(value(s, "moonswitch_calls_total", mapping_gateway="cust",
                       routing_gateway="carrier", status="486"), 1.0, "refused calls")
        for direction in ("in", "out"):
            # At least once: nta sends the 486 again until the caller's ACK.
            check_eq(value(s, "moonswitch_sip_responses_total", direction=direction,
                           status="486") >= 1, True, "486 %s" % direction)
        check_eq(value(s, "moonswitch_calls_active"), 0.0, "calls in progress after")


if __name__ == "__main__":
    run_tests(globals())
