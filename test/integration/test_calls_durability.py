"""CDRs survive kill -9: two calls finish, a third is up when the switch is
killed; after a restart on the same data the two records are intact (and
the third, never finished, has none). Also the CSV export.
"""

import signal

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, check_cdr, ctl_value, mapping, routing,
                         run, switch_policy, wait_cdrs, wait_done, wait_until)


def test_cdrs_survive_kill_9():
    with carrier("call_uas.xml", calls=3) as uas, carrier("call_uas.xml") as after:
        pol = {"10-calls.lua": switch_policy() + mapping() + routing("carrier", uas.port) +
               routing("after", after.port, prefixes=["2"])}
        sw = Switch(pol)
        with sw:
            run(caller(sw, number="1001001"), sw)
            run(caller(sw, number="1002002"), sw)
            wait_cdrs(sw, 2)
            held = caller(sw, number="1003003", hold_ms=20000)
            held.start()
            wait_until(lambda: calls_count(sw) == 1, 5, what="the third call up")
            sw.stop(signal.SIGKILL)
            held.kill()
            data = sw.data_dir
            with Switch(pol, data_dir=data) as again:
                check_eq(ctl_value(again, "return cdrs.count()"), "2", "CDRs after kill -9")
                check_cdr(wait_cdrs(again, 2), callee="1002002", status=200, hangup="caller")
                older = ctl_value(again, "return cdrs.last(2)[2].callee")
                check_eq(older, "1001001", "the older record")
                csv = ctl_value(again, "return cdrs.csv(5)").split("\n")
                check(csv[0].startswith("seq,call_id,caller,callee"), "CSV header %r" % csv[0])
                check_eq(len(csv), 3, "CSV lines (header + 2)")
                check(",1001001,1001001,1001001,cust,carrier," in csv[1], "CSV row %r" % csv[1])
                # A new call continues the sequence.
                run(caller(again, number="2004004"), again)
                wait_done(after, again)
                check_eq(ctl_value(again, "return cdrs.last(1)[1].callee"), "2004004",
                         "newest after restart")
                check_eq(ctl_value(again, "return cdrs.last(1)[1].status"), "200", "status")
        uas.kill()


if __name__ == "__main__":
    run_tests(globals())
