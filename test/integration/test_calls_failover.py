"""Failover between routing gateways: a 503 from the first carrier, the
statuses that fail over (failover_codes: the switch's, a gateway's own, a
reload changing them, and --check refusing bad ones), a carrier that never
answers (invite_timeout), the line limit sending the third call to the next
gateway, and a registration gateway skipped while its registration is down.
The CDR names the gateway that took the call.
"""

import re

from harness import Switch, check, check_eq, run_check, run_tests
from calls_peers import (caller, carrier, check_cdr, ctl_value, mapping, routing, run,
                         switch_policy, wait_cdrs, wait_done, wait_until)
from peers import registration


def test_failover_on_503():
    with carrier("call_uas_fail.xml", code=503) as bad, carrier("call_uas.xml") as good:
        pol = switch_policy() + mapping() + routing("first", bad.port, priority=1) + \
            routing("second", good.port, priority=2)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw), sw)
            wait_done(bad, sw)
            wait_done(good, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="second", hangup="caller")


def test_failover_codes_switch_gateway_and_reload():
    # "busy" answers every call 486, which is not in the default set. Four
    # policies in turn, each applied by reload(); the CDR of each call says
    # whether it went on to "good" or the caller heard the 486.
    with carrier("call_uas_fail.xml", code=486, calls=4) as busy, \
            carrier("call_uas.xml", calls=2) as good:
        def policy(switch_codes=None, gw_codes=None):
            return switch_policy(failover_codes=switch_codes) + mapping() + \
                routing("busy", busy.port, priority=1, failover_codes=gw_codes) + \
                routing("good", good.port, priority=2)

        steps = [  # (switch's codes, busy's codes, goes on to "good")
            (None, None, False),        # the default set: no 486
            ([486, 503], None, True),   # the switch's set
            ([486], [503], False),      # the gateway's own set wins
            (None, [486], True),        # ... either way
        ]
        with Switch({"10-calls.lua": policy()}) as sw:
            for n, (switch_codes, gw_codes, on) in enumerate(steps, 1):
                if n > 1:
                    sw.write_policy("10-calls.lua", policy(switch_codes, gw_codes))
                    check_eq(ctl_value(sw, "return (reload())"), "true", "reload %d" % n)
                what = "call %d (switch %r, gateway %r)" % (n, switch_codes, gw_codes)
                if on:
                    run(caller(sw), sw)
                else:
                    run(caller(sw, "call_uac_fail.xml", code=486), sw)
                rec = wait_cdrs(sw, n)
                print("  %s: %s %s %s" % (what, rec["routing_gateway"], rec["status"],
                                          rec["hangup"]))
                if on:
                    check_cdr(rec, routing_gateway="good", status=200, hangup="caller",
                              callee="1555", routed_callee="1555", mapping_gateway="cust")
                else:
                    check_cdr(rec, routing_gateway="busy", status=486, hangup="callee",
                              answer=None, callee="1555", mapping_gateway="cust")
            wait_done(busy, sw)
            wait_done(good, sw)
            check("busy answered 486, trying the next gateway" in sw.log(), "failover logged")


def test_check_refuses_bad_failover_codes():
    header = "-- failover_codes\n\n"  # the definitions start on line 3
    cases = [  # (policy, the message's words)
        ("switch { sip = { failover_codes = { 486, 200 } } }\n",
         ["10-x.lua:3:", "switch", "'sip.failover_codes[2]'", "300 to 699", "not 200"]),
        ('routing_gateway "gw" { address = "192.0.2.1:5060", failover_codes = { 486, "busy" } }\n',
         ["10-x.lua:3:", 'routing_gateway "gw"', "'failover_codes[2]'", "not string"]),
        ('routing_gateway "gw" { address = "192.0.2.1:5060", failover_codes = 486 }\n',
         ["10-x.lua:3:", "'failover_codes'", "list of status codes", "not number"]),
        ('routing_gateway "gw" { address = "192.0.2.1:5060", failover_codes = { 486.5 } }\n',
         ["10-x.lua:3:", "'failover_codes[1]'", "whole number", "not 486.5"]),
        ("switch { sip = { failover_codes = { x = 486 } } }\n",
         ["10-x.lua:3:", "'sip.failover_codes'", "key x"]),
    ]
    for text, words in cases:
        rc, out, _ = run_check({"10-x.lua": header + text}, "check-failover")
        print("  %s" % out.strip())
        check_eq(rc, 1, "--check exit code for %r" % text)
        for w in words:
            check(w in out, "%r not in --check's %r" % (w, out))
    rc, out, _ = run_check({"10-x.lua": header +
                            "switch { sip = { failover_codes = { 300, 486, 699 } } }\n" +
                            'routing_gateway "gw" { address = "192.0.2.1:5060", '
                            "failover_codes = {} }\n"}, "check-failover")
    check_eq(rc, 0, "--check on good failover_codes (output %r)" % out)
    check(not re.search(r"error", out, re.I), "output %r" % out)


def test_failover_when_a_carrier_never_answers():
    with carrier("call_uas_silent.xml") as silent, carrier("call_uas.xml") as good:
        pol = switch_policy(invite_timeout=1) + mapping() + \
            routing("silent", silent.port, priority=1) + routing("good", good.port, priority=2)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw), sw, timeout=15)
            wait_done(good, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="good")
            check_eq("silent: INVITE Timeout" in sw.log(), True, "invite_timeout in the log")


def test_longest_prefix_first_then_priority():
    # "15" is longer than "1": it wins although its priority number is higher.
    with carrier("call_uas.xml") as long_, carrier("call_uas.xml") as short:
        pol = switch_policy() + mapping() + \
            routing("short", short.port, prefixes=["1"], priority=1) + \
            routing("long", long_.port, prefixes=["15"], priority=9)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw, number="1555"), sw)
            wait_done(long_, sw)
            check_cdr(wait_cdrs(sw, 1), routing_gateway="long")
        short.kill()


def test_line_limit_sends_the_third_call_on():
    with carrier("call_uas.xml", calls=2) as limited, carrier("call_uas.xml") as spare:
        pol = switch_policy() + mapping() + \
            routing("limited", limited.port, priority=1, line_limit=2) + \
            routing("spare", spare.port, priority=2)
        with Switch({"10-calls.lua": pol}) as sw:
            # Three calls held together for 3 s, started 0.2 s apart.
            uac = caller(sw, hold_ms=3000, calls=3, rate=5)
            uac.start()
            wait_until(lambda: ctl_value(sw, "return calls.count()") == "3", 5,
                       what="three calls up")
            check_eq(ctl_value(sw, 'return gateways["limited"].calls'), "2", "limited calls")
            check_eq(ctl_value(sw, 'return gateways["spare"].calls'), "1", "spare calls")
            check_eq(uac.wait(20), 0, "caller sipp exit code")
            wait_done(limited, sw)
            wait_done(spare, sw)
            wait_cdrs(sw, 3)
            gws = ctl_value(sw, "local t = {} for _, r in ipairs(cdrs.last(3)) do "
                                "t[#t + 1] = r.routing_gateway end table.sort(t) "
                                "return table.concat(t, ',')")
            check_eq(gws, "limited,limited,spare", "gateways of the three calls")


def test_mapping_gateway_line_limit():
    with carrier("call_uas.xml") as uas:
        pol = switch_policy() + mapping(line_limit=0) + routing("carrier", uas.port)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw, "call_uac_fail.xml", code=503), sw)
        uas.kill()


def test_registration_gateway_skipped_while_down():
    # The registration points at a port where nobody answers: it never
    # becomes active, so its gateway is skipped for the static one.
    with carrier("call_uas.xml") as good:
        pol = switch_policy() + mapping() + registration("reg", 9, username="100") + \
            'routing_gateway "viareg" { type = "registration", registration = "reg", ' \
            'address = "127.0.0.1:9", prefixes = { "1" }, priority = 1 }\n' + \
            routing("static", good.port, priority=2)
        with Switch({"10-calls.lua": pol}) as sw:
            check_eq(ctl_value(sw, 'return gateways["viareg"].online'), "false", "online")
            run(caller(sw), sw)
            wait_done(good, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="static")


if __name__ == "__main__":
    run_tests(globals())
