"""Gateway health: OPTIONS checks (options_check) take a routing gateway
offline after two unanswered checks and back online after one answer; any
real response counts (even 404), nta's own 503/408 does not; calls skip an
offline gateway; reloads start, change and stop the checks."""

import re
import time

from harness import Switch, check, check_eq, run_tests
from calls_peers import (OptionsPeer, caller, carrier, check_cdr, ctl_value, mapping, routing,
                         run, switch_policy, wait_cdrs, wait_done, wait_until)
from peers import gateway_online


def test_offline_after_two_misses_and_back_after_one_answer():
    with OptionsPeer(code=404) as gw:
        pol = switch_policy() + mapping() + routing("gw", gw.port, options_check=1)
        with Switch({"10-calls.lua": pol}) as sw:
            wait_until(lambda: gw.count(answered=True) >= 2, 5, what="two answered OPTIONS")
            check_eq(gateway_online(sw, "gw"), True, "online while 404 answers come")
            gw.answering = False
            t0 = time.time()
            wait_until(lambda: not gateway_online(sw, "gw"), 6, what="gw offline")
            check(gw.count(answered=False) >= 2,
                  "offline after %d unanswered OPTIONS" % gw.count(answered=False))
            check(time.time() - t0 > 1.0, "offline too soon")
            check("gw: offline" in sw.log(), "offline logged")
            table = ctl_value(sw, "return tostring(gateways)")
            check(re.search(r"^gw\s+\S+\s+no\b", table, re.M) is not None,
                  "status table shows gw offline:\n%s" % table)
            gw.answering = True
            wait_until(lambda: gateway_online(sw, "gw"), 4, what="gw back online")
            check("gw: online" in sw.log(), "online logged")


def test_local_errors_are_not_answers():
    # Nobody listens on the port: the ICMP error makes nta answer 503
    # itself, which is a miss, not an answer.
    with OptionsPeer() as gw:
        port = gw.port
    pol = switch_policy() + mapping() + routing("dead", port, options_check=1)
    with Switch({"10-calls.lua": pol}) as sw:
        wait_until(lambda: not gateway_online(sw, "dead"), 6, what="dead offline")


def test_calls_fail_over_from_an_offline_gateway():
    with OptionsPeer(answering=False) as bad, carrier("call_uas.xml") as good:
        pol = switch_policy() + mapping() + \
            routing("bad", bad.port, priority=1, options_check=1) + \
            routing("good", good.port, priority=2)
        with Switch({"10-calls.lua": pol}) as sw:
            check_eq(gateway_online(sw, "good"), True, "static gateway online")
            wait_until(lambda: not gateway_online(sw, "bad"), 6, what="bad offline")
            run(caller(sw), sw)
            wait_done(good, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="good")
            check_eq(bad.count("INVITE"), 0, "INVITEs to the offline gateway")
            check("bad skipped: offline" in sw.log(), "skip logged")


def test_reload_starts_changes_and_stops_checks():
    with OptionsPeer() as a, OptionsPeer(answering=False) as b:
        base = switch_policy() + mapping()
        with Switch({"10-calls.lua": base + routing("gw", a.port)}) as sw:
            time.sleep(1.5)
            check_eq(a.count(), 0, "OPTIONS without options_check")
            check_eq(gateway_online(sw, "gw"), True, "static gateway online")
            # Checks start on reload.
            sw.write_policy("10-calls.lua", base + routing("gw", a.port, options_check=1))
            ctl_value(sw, "return (reload())")
            wait_until(lambda: a.count() >= 1, 4, what="OPTIONS after the reload")
            # The address changes to a silent peer: offline.
            sw.write_policy("10-calls.lua", base + routing("gw", b.port, options_check=1))
            ctl_value(sw, "return (reload())")
            wait_until(lambda: not gateway_online(sw, "gw"), 6, what="gw offline at b")
            # options_check off: static again, and no more OPTIONS.
            sw.write_policy("10-calls.lua", base + routing("gw", b.port))
            ctl_value(sw, "return (reload())")
            check_eq(gateway_online(sw, "gw"), True, "online without checks")
            n = b.count()
            time.sleep(1.5)
            check_eq(b.count(), n, "OPTIONS after checks stopped")
            # Removed: gone from gateways.
            sw.write_policy("10-calls.lua", base)
            ctl_value(sw, "return (reload())")
            check_eq(ctl_value(sw, 'return gateways["gw"] == nil'), "true", "gw removed")


if __name__ == "__main__":
    run_tests(globals())
