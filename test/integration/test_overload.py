"""Overload shedding: a switch that falls behind on what it receives refuses
new calls (503 with Retry-After, statelessly) until it has caught up, and
then takes calls again.

The stall: SIPp calls through the switch to a SIPp carrier at RATE calls/s
(a rate the ASan build sustains, MOON_OVERLOAD_RATE), and the switch is
stopped (SIGSTOP) for STALL_S seconds (MOON_OVERLOAD_STALL), then
continued. Calls in flight around the stall may fail (408: their INVITE
to the carrier timed out while the answers waited); the others complete
or are shed. What came in
meanwhile (the caller's INVITEs and retransmissions, the carrier's
answers) fills its UDP receive queue: the switch is overloaded, answers
new INVITEs 503 with Retry-After (the caller's scenario accepts that, logs
it, and fails a 503 without Retry-After), one per call (the caller's
retransmissions that were queued behind the INVITEs the switch had taken
meet their transactions), says so in its log, in stats() and in /metrics;
then the queue empties and the overload ends. After it,
a second run of calls at the same rate completes every call with nothing
shed, and the calls and transactions the stall left go back down.

When the switch works the stall's backlog off within the detector's entry
window (0.8 s with the queue half full; the batched reads of the event port
often manage it at this rate under ASan), there is no overload and nothing
is shed, by design: then only the recovery is checked, and that nothing was
shed. MOON_OVERLOAD_SHEDDING=0 runs the same with
security.overload_shedding = false: when the switch notices the overload
it takes every call, and the test fails (no 503). Whether the ASan build recovers from this stall
without shedding depends on the machine's load: of two such runs, one
recovered and one did not (SIPp's run did not end within its 60 s)."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, free_port, run_tests  # noqa: E402
from harness import scratch_dir  # noqa: E402
from peers import Sipp, wait_until  # noqa: E402
from calls_peers import CALLER_KEYS, mapping, routing, scenario, switch_policy  # noqa: E402
from test_calls_stateless import screen_counts  # noqa: E402
from test_metrics import get, parse, value  # noqa: E402

RATE = int(os.environ.get("MOON_OVERLOAD_RATE", "200"))
SHEDDING = os.environ.get("MOON_OVERLOAD_SHEDDING", "1") != "0"
STALL_AT = 3.0   # seconds into the first run
STALL_S = float(os.environ.get("MOON_OVERLOAD_STALL", "5"))
RUN_S = 10       # the first run's length at RATE
AFTER_S = 6      # the second run's


def policy(metrics_port):
    sw = switch_policy(invite_timeout=10).replace(
        "switch {", 'switch { metrics = "127.0.0.1:%d", security = { source_rate = 0, '
        'overload_shedding = %s },' % (metrics_port, "true" if SHEDDING else "false"), 1)
    return {"10-calls.lua": sw + mapping() + routing("carrier", CARRIER_PORT)}


CARRIER_PORT = None


def sipp_quiet(sipp):
    sipp.args.remove("-trace_msg")  # thousands of messages
    return sipp


def caller(sw, name, calls, tag):
    keys = []
    for k, v in dict(CALLER_KEYS, to_user="1555").items():
        keys += ["-key", k, v]
    return sipp_quiet(Sipp(scenario(name), workdir=scratch_dir("uac-" + tag),
                           remote="127.0.0.1:%d" % sw.port,
                           extra=keys + ["-s", "1555", "-d", "0", "-m", str(calls),
                                         "-r", str(RATE), "-l", str(RATE * 20),
                                         "-timeout", "60", "-trace_screen", "-trace_logs"]))


def stat(sw, expr):
    rc, out, err = sw.ctl("return " + expr)
    check(rc == 0, "%s: %s" % (expr, err))
    out = out.strip()
    return out == "true" if out in ("true", "false") else float(out)


def shed_lines(sipp):
    """The 503s the caller logged, with their Retry-After."""
    lines = []
    for name in os.listdir(sipp.dir):
        if name.endswith("_logs.log"):
            with open(os.path.join(sipp.dir, name), errors="replace") as f:
                lines += [l.strip() for l in f if l.startswith("shed")]
    return lines


def test_stall_sheds_then_recovers():
    global CARRIER_PORT
    carrier = sipp_quiet(Sipp(scenario("call_uas.xml"), workdir=scratch_dir("uas-overload"),
                              extra=["-m", "1000000", "-timeout", "170"]))
    CARRIER_PORT = carrier.port
    mport = free_port()
    with carrier, Switch(policy(mport), log_level="warn") as sw:
        # ---- the stall, in the middle of a run
        uac = caller(sw, "call_uac_shed.xml", RATE * RUN_S, "stall")
        seen_active, fill_max = False, 0.0
        with uac:
            time.sleep(STALL_AT)
            sw.send_signal(signal.SIGSTOP)
            try:
                time.sleep(STALL_S)
            finally:
                sw.send_signal(signal.SIGCONT)
            while uac.wait(0.2) is None:
                seen_active = seen_active or stat(sw, "stats().overload.active")
                fill_max = max(fill_max, stat(sw, "stats().overload.queue_fill_max"))
            ok, bad = screen_counts(uac)
            shed = shed_lines(uac)
            report = uac.report() if not shed else ""
        st_shed = stat(sw, "stats().overload.shed")
        episodes = stat(sw, "stats().overload.episodes")
        print("  stall run: %s calls ok (shed included), %s failed; the caller saw %d 503s, "
              "the switch shed %d in %d episodes; queue fill max %.2f; overload seen "
              "active: %s" % (ok, bad, len(shed), st_shed, episodes, fill_max, seen_active),
              file=sys.stderr)
        # Calls in flight around the stall may fail (408: the carrier's
        # answers waited in the queue past the INVITE's timer B); later
        # ones are shed or completed. A switch that does not recover
        # fails calls until the end (or SIPp never finishes: None).
        check(bad is not None and bad <= RATE * (STALL_S + 2),
              "calls failed in the stall run: %r\n%s" % (bad, sw.log_tail(20)))
        check(fill_max >= 0.5, "the stall filled the receive queue (max %.2f)" % fill_max)
        if episodes == 0:
            # The switch worked the stall's backlog off within the detector's
            # entry window (0.8 s with the queue at least half full): no
            # overload, by design, and nothing to shed. The unit test checks
            # the detector's rules; here what must hold is the recovery below.
            print("  the backlog drained before the detector's window: no overload to shed",
                  file=sys.stderr)
            check_eq(st_shed, 0.0, "calls shed without an overload")
            check(not shed, "503s without an overload: %r" % shed[:3])
        else:
            check(sw.wait_log("overloaded: the SIP receive queue is"), "the warning entering")
            check(st_shed > 0, "no call shed after the stall\n" + sw.log_tail(30))
            check(shed, "the caller saw no 503\n" + report)
            check(all(re.match(r"shed Retry-After: \d+$", l) for l in shed),
                  "503s without Retry-After: %r" % shed[:3])
            # One 503 per call refused: a retransmission of a refused INVITE gets
            # the same answer (not counted again), and one of an INVITE taken
            # before the overload meets its transaction (no 503 at all).
            check_eq(len(shed), st_shed, "503s the caller saw (the switch's count of calls shed)")
            status, _, body = get(mport)
            check_eq(status, 200, "GET /metrics")
            _, samples = parse(body)
            check_eq(value(samples, "moonswitch_calls_shed_total"), st_shed, "calls shed metric")
        # ---- the overload ends; what the stall left goes down
        wait_until(lambda: not stat(sw, "stats().overload.active"), 20,
                   what="the overload to end")
        if episodes:
            check(sw.wait_log("overload over after"), "the warning leaving")
        value_after = value(parse(get(mport)[2])[1], "moonswitch_overload_active")
        check_eq(value_after, 0.0, "moonswitch_overload_active after the overload")
        wait_until(lambda: stat(sw, "calls.count()") == 0, 30, what="the stall's calls to end")
        # ---- calls complete again, none shed
        shed_before = stat(sw, "stats().overload.shed")
        uac2 = caller(sw, "call_uac.xml", RATE * AFTER_S, "after")
        with uac2:
            rc = uac2.wait(60)
            ok2, bad2 = screen_counts(uac2)
            print("  after the stall: %s calls ok, %s failed" % (ok2, bad2), file=sys.stderr)
            if (rc, ok2, bad2) != (0, RATE * AFTER_S, 0):
                check_eq((rc, ok2, bad2), (0, RATE * AFTER_S, 0),
                         "SIPp's exit and its calls after the stall\n" + uac2.report())
        check_eq(stat(sw, "stats().overload.shed"), shed_before, "calls shed after the stall")
        wait_until(lambda: stat(sw, "calls.count()") == 0, 10, what="calls to end")
        # Transactions end 64 * T1 (6.4 s here) after their answer.
        wait_until(lambda: stat(sw, "stats().sip.server_transactions") < 10, 20,
                   what="the server transactions to end")


if __name__ == "__main__":
    run_tests(globals())
