"""What the person at the REPL reads: print() inside a chunk comes back to
the moonctl that sent it (before the values, also after the chunk waited),
print() from hooks and timers goes to the log, help lists the live objects,
calls prints as a table, top() prints rates."""

import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import MOONCTL, Switch, check, check_eq, run_tests  # noqa: E402
from calls_peers import (caller, carrier, mapping, routing, switch_policy,  # noqa: E402
                         wait_done, wait_until)
from peers import ctl_value  # noqa: E402


def ctl_ok(sw, chunk):
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "%s: rc %d, stderr %r\n%s" % (chunk, rc, err, sw.log_tail(15)))
    return out


def interactive(sw, text):
    p = subprocess.run([MOONCTL, "--control", sw.control], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_print_comes_before_the_values():
    with Switch() as sw:
        check_eq(ctl_ok(sw, 'print("x") return 1'), "x\n1\n", "print then a value")
        check_eq(ctl_ok(sw, 'print("a", 1, nil, true) print() return "v", 2'),
                 "a\t1\tnil\ttrue\n\nv\n2\n", "print's arguments, tab-separated")
        check_eq(ctl_ok(sw, 'print("only")'), "only\n", "print without values")
        # A Lua error: what was printed still comes, on stdout; the error on stderr.
        rc, out, err = sw.ctl('print("printed-" .. 7) error("boom")')
        check_eq((rc, out), (1, "printed-7\n"), "print before an error (%r)" % err)
        check("boom" in err, "stderr lacks the error: %r" % err)
        # print in a plain coroutine inside the chunk is still the chunk's.
        check_eq(ctl_ok(sw, 'coroutine.wrap(function() print("co") end)() return 3'),
                 "co\n3\n", "print inside a coroutine of the chunk")
        # The switch's own stderr did not get it.
        check("printed-7" not in sw.log(), "a chunk's print reached the switch's log")


def test_print_after_sleep():
    with Switch() as sw:
        check_eq(ctl_ok(sw, 'print("a") sleep(0.2) print("b") return "c"'), "a\nb\nc\n",
                 "prints on both sides of a sleep")
        # Each line comes as it is printed, not when the chunk ends.
        t0 = time.monotonic()
        p = sw.ctl_popen('print("first") sleep(2) print("second")')
        try:
            ready, _, _ = select.select([p.stdout], [], [], 1.5)
            check(ready, "nothing printed within 1.5 s of a chunk that printed at once")
            first = p.stdout.readline().decode()
            check_eq(first, "first\n", "the first line")
            check(time.monotonic() - t0 < 1.8, "the first line waited for the sleep")
            # Another client meanwhile gets only its own output.
            check_eq(ctl_ok(sw, 'print("other") return 1'), "other\n1\n",
                     "a second client during the sleep")
            rest, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        check_eq((p.returncode, rest.decode()), (0, "second\n"), "after the sleep (%r)" % err)


def test_print_much():
    # More than the switch hands over at once (64 KiB), all of it, in order.
    with Switch() as sw:
        out = ctl_ok(sw, "for i = 1, 30000 do print(i) end return 'end'")
        lines = out.split("\n")
        check_eq(len(lines), 30002, "lines printed")
        check_eq(lines[:3], ["1", "2", "3"], "first lines")
        check_eq(lines[-3:], ["30000", "end", ""], "last lines")
        check(all(lines[i] == str(i + 1) for i in range(30000)), "lines out of order")


def test_client_gone_while_chunk_prints():
    with Switch() as sw:
        p = sw.ctl_popen('print("a") sleep(0.5) print("b") kv.put("after", "yes")')
        select.select([p.stdout], [], [], 2)
        p.kill()
        p.wait()
        # The chunk goes on without its client, and the switch with it.
        wait_until(lambda: ctl_value(sw, 'return kv.get("after")') == "yes", 5,
                   what="the chunk finished")
        check_eq(ctl_ok(sw, 'print("still") return 1'), "still\n1\n", "a chunk afterwards")
        check(sw.alive(), "the switch died")


def test_print_from_timer_logs():
    with Switch() as sw:
        check_eq(ctl_ok(sw, 'timer.after(0, function() print("from", "timer") end) '
                            'sleep(0.2) return 1'), "1\n",
                 "a timer's print does not reach the chunk that armed it")
        check(sw.wait_log("from\ttimer"), "the timer's print is not in the log:\n" +
              sw.log_tail(10))
        line = [x for x in sw.log().splitlines() if "from\ttimer" in x][0]
        check(" info " in line and " lua " in line, "log line %r: not info, module lua" % line)


def test_help():
    with Switch() as sw:
        out = ctl_ok(sw, "return help")
        for name in ("registrations", "gateways", "endpoints", "accounts", "suspensions",
                     "calls", "cdrs", "stats", "reload", "kv", "sip", "timer", "sleep",
                     "print", "help", "top"):
            lines = [x for x in out.splitlines() if x.split()[:1] == [name]]
            check_eq(len(lines), 1, "help lines for %s in\n%s" % (name, out))
        # help() prints the same listing, help(x) what x has.
        check_eq(ctl_ok(sw, "help()"), out, "help() and help")
        reg = ctl_ok(sw, "help(registrations)")
        check(reg.startswith("registrations: "), "help(registrations): %r" % reg)
        for needle in (":refresh()", ".state", ".failures", "registrations()"):
            check(needle in reg, "help(registrations) lacks %r:\n%s" % (needle, reg))
        check_eq(ctl_ok(sw, 'help("registrations")'), reg, "help by name")
        check(ctl_ok(sw, "help(kv.put)").startswith("kv: "), "help of a module's function")
        check(ctl_ok(sw, "help(timer.after(60, function() end))").startswith("timer: "),
              "help of a timer handle")
        check("no help" in ctl_ok(sw, 'help("nothing-here")'), "help of an unknown name")
        # In the interactive REPL: the bare word, and help(x).
        rc, iout, err = interactive(sw, "help\nhelp(calls)\n")
        check_eq(rc, 0, "interactive exit code (%r)" % err)
        check("registrations" in iout and "calls: " in iout and ":hangup()" in iout,
              "interactive help:\n%s" % iout)
        check("nil" not in iout.split(), "interactive help printed nil:\n%s" % iout)


def test_print_interactive():
    with Switch() as sw:
        rc, out, err = interactive(sw, 'print("p") sleep(0.1) print("q")\n1 + 1\n')
        check_eq((rc, out.split()), (0, ["p", "q", "2"]), "interactive prints (%r)" % err)


def test_top():
    with Switch() as sw:
        rc, out, err = sw.ctl("top(3, 0.5)")
        check_eq(rc, 0, "top exit code (%r)" % err)
        lines = out.splitlines()
        check_eq(len(lines), 4, "a header and three samples:\n%s" % out)
        check(lines[0].split()[:2] == ["time", "calls"] and "sip in/s" in lines[0],
              "top's header: %r" % lines[0])
        for line in lines[1:]:
            check_eq(len(line.split()), 10, "columns of %r" % line)
        # SIP traffic while it samples shows in its rates. The header comes
        # just before the first sample is taken.
        p = sw.ctl_popen("top(1, 2)")
        try:
            header = p.stdout.readline().decode()
            check(header.startswith("time"), "top's header: %r" % header)
            for _ in range(20):
                sw.options()
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        sample = out.decode().splitlines()[0].split()
        check(float(sample[6]) >= 5, "sip in/s %r with 20 OPTIONS in 1 s" % sample[6])
        check(float(sample[7]) >= 5, "sip out/s %r with 20 answers in 1 s" % sample[7])
        rc, out, err = sw.ctl("top(0)")
        check_eq(rc, 1, "top(0) is an error")
        check("top: n" in err, "top(0): %r" % err)
        # The counters it reads.
        for k in ("calls", "calls_started", "cdrs", "sip_received", "sip_sent", "monotonic"):
            check(ctl_value(sw, "return type(stats().%s)" % k) == "number", "stats()." + k)


def test_register_counters():
    # top()'s reg/s comes from stats().registers_accepted: one per 200.
    from test_registrar_auth import UA, accounts_policy
    with Switch(accounts_policy()) as sw:
        check_eq(ctl_value(sw, "return stats().registers_accepted"), "0", "before")
        with UA(sw.port, "1001") as ua:
            check_eq(ua.register()[0], 200, "first REGISTER")
            check_eq(ua.register()[0], 200, "refresh")
        check_eq(ctl_value(sw, "return stats().registers_accepted"), "2", "after two")
        check_eq(ctl_value(sw, "return stats().bindings"), "1", "bindings")


ROUTE_HOOK = """
function route(call)
  print("routing", call.caller, call.callee)
  return { "carrier" }
end
"""


def test_calls_view_and_hook_print():
    with carrier("call_uas.xml") as uas:
        pol = {"10-calls.lua": switch_policy() + mapping() + routing("carrier", uas.port) +
               ROUTE_HOOK}
        with Switch(pol) as sw:
            empty = ctl_ok(sw, "return calls")
            check("caller" in empty and "(0 calls)" in empty, "calls, none:\n%s" % empty)
            uac = caller(sw, hold_ms=3000)
            uac.start()
            wait_until(lambda: ctl_value(sw, "return calls.count()") == "1", 5,
                       what="one call in progress")
            wait_until(lambda: ctl_value(sw, "return calls.list()[1].state") == "answered", 5,
                       what="the call answered")
            time.sleep(1.1)
            out = ctl_ok(sw, "return calls")
            lines = out.splitlines()
            check_eq(len(lines), 3, "header, one call, count:\n%s" % out)
            for col in ("caller", "callee", "mapping gateway", "routing gateway", "state",
                        "age"):
                check(col in lines[0], "calls header lacks %r: %r" % (col, lines[0]))
            row = lines[1].split()
            check_eq(row[1:6], ["1001", "1555", "cust", "carrier", "answered"], "call row")
            check(row[6].endswith("s") and int(row[6][:-1]) >= 1, "age %r" % row[6])
            check_eq(lines[2], "(1 call)", "calls count line")
            # Interactive: the bare word prints the same table.
            rc, iout, err = interactive(sw, "calls\n")
            check("1001" in iout and "answered" in iout, "interactive calls:\n%s" % iout)
            check_eq(uac.wait(15), 0, "caller sipp exit code")
            wait_done(uas, sw)
            # The route() hook's print went to the switch's log, at info.
            check(sw.wait_log("routing\t1001\t1555"), "route()'s print is not in the log:\n" +
                  sw.log_tail(20))
            line = [x for x in sw.log().splitlines() if "routing\t1001" in x][0]
            check(" info " in line and " lua " in line, "log line %r" % line)


if __name__ == "__main__":
    run_tests(globals())
