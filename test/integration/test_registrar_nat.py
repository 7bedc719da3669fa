"""Endpoint bindings over time: NAT keepalives (OPTIONS to bindings whose
Contact differs from their source) and removal after missed ones, and
bindings that expired while the switch was down, dropped at start."""

import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests, scratch_dir  # noqa: E402
from peers import wait_until  # noqa: E402
from test_registrar_auth import UA, accounts_policy, endpoints  # noqa: E402


def kill9(sw):
    sw.send_signal(signal.SIGKILL)
    check(sw.wait(5) is not None, "switch survived SIGKILL")


def test_nat_keepalive_and_misses():
    # The policy's settings (options is the default mode): an OPTIONS every
    # 5 s (the shortest allowed), removed after two unanswered.
    pol = accounts_policy(endpoint_keepalive_interval=5, endpoint_keepalive_misses=2)
    with Switch(pol) as sw:
        check(sw.wait_log("NAT keepalive: options every 5 s, removed after 2 misses", 2),
              "keepalive settings not applied\n%s" % sw.log_tail())
        with UA(sw.port, "1001", contact_host="10.0.0.1") as ua:
            check_eq(ua.register(expires=60)[0], 200, "NAT registration")
            check_eq(endpoints(sw, "1001")[0]["nat"], True, "nat")
            with UA(sw.port, "1002") as direct:
                check_eq(direct.register(expires=60)[0], 200, "direct registration")
                # While the phone answers, OPTIONS come once an interval and
                # it stays.
                ua.poll(6)
                direct.poll(0.1)
                check(ua.options_seen >= 1, "keepalives seen: %d" % ua.options_seen)
                check_eq(direct.options_seen, 0, "keepalives to a binding not behind NAT")
                check_eq(len(endpoints(sw, "1001")), 1, "binding while answering")
                # It stops answering: removed after two misses (each miss
                # is nta's timer F, 64 x T1 = 6.4 s here, or an ICMP error;
                # the next OPTIONS leaves at the binding's next slot).
                ua.answer_options = False
                wait_until(lambda: (ua.poll(0.2), endpoints(sw, "1001") == [])[1], 30,
                           what="the silent NAT binding to go")
                check(sw.wait_log("keepalives unanswered", 1), "reason not logged")
                check_eq(len(endpoints(sw, "1002")), 1, "the direct binding stays")


def test_expired_while_down_dropped_at_start():
    pol = accounts_policy()
    top = scratch_dir("bindings-down")
    data = os.path.join(top, "data")
    with Switch(pol, data_dir=data) as sw:
        with UA(sw.port, "1001") as a:
            check_eq(a.register(expires=10)[0], 200, "1001")
        kill9(sw)
    time.sleep(10.5)
    with Switch(pol, data_dir=data) as sw:
        check_eq(endpoints(sw, "1001"), [], "a binding that expired while the switch was down")
        check(sw.wait_log("1 expired or unknown dropped", 1), "drop not logged\n%s"
              % sw.log_tail())
    shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    run_tests(globals())
