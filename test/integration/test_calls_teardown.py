"""Calls ended by the switch: call:hangup() from the REPL and SIGTERM both
send BYE on both legs (each SIPp side fails unless it gets its BYE), and
the CDR says the switch hung up.
"""

from harness import Switch, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, check_cdr, ctl_value, mapping, routing,
                         switch_policy, wait_cdrs, wait_done, wait_until)


def start_call(sw):
    uac = caller(sw, "call_uac_wait_bye.xml")
    uac.start()
    wait_until(lambda: calls_count(sw) == 1 and
               ctl_value(sw, "return calls.list()[1].state") == "answered", 5,
               what="the call answered")
    return uac


def test_hangup_from_the_repl():
    with carrier("call_uas.xml") as uas, \
            Switch({"10-calls.lua": switch_policy() + mapping() + routing("c", uas.port)}) as sw:
        uac = start_call(sw)
        check_eq(ctl_value(sw, "return calls.list()[1].caller"), "1001", "call.caller")
        check_eq(ctl_value(sw, "local c = calls.list()[1] c:hangup() return c.state"), "ended",
                 "state after hangup")
        check_eq(uac.wait(10), 0, "caller got its BYE")
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), hangup="switch", status=200)
        check_eq(calls_count(sw), 0, "calls")


def test_sigterm_byes_every_call():
    with carrier("call_uas.xml") as uas:
        sw = Switch({"10-calls.lua": switch_policy() + mapping() + routing("c", uas.port)})
        with sw:
            uac = start_call(sw)
            check_eq(sw.stop(), 0, "exit code")
            check_eq(uac.wait(10), 0, "caller got its BYE")
            wait_done(uas, sw)


if __name__ == "__main__":
    run_tests(globals())
