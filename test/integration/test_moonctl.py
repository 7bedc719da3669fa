"""moonctl -e and the interactive mode against a running switch: output
format, errors, exit codes, the time budget, sleep, timers and kv."""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MOONCTL, Switch, check, check_eq, moonctl, run_tests,  # noqa: E402
                     scratch_dir)


def ctl_ok(sw, chunk, what=None):
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "%s: rc %d, stderr %r\n%s" % (what or chunk, rc, err, sw.log_tail(15)))
    return out


def test_values():
    with Switch() as sw:
        check_eq(ctl_ok(sw, "return 1+1"), "2\n", "return 1+1")
        check_eq(ctl_ok(sw, "return 'a \"q\" b\\tc'"), 'a "q" b\tc\n', "a string prints raw")
        check_eq(ctl_ok(sw, 'return 1, "a", true, nil'), "1\na\ntrue\nnil\n",
                 "four values, one per line")
        check_eq(ctl_ok(sw, "return 0.1, 1e100, 2^53, -0.5, 1/3, false"),
                 "0.1\n1e+100\n9.007199254741e+15\n-0.5\n0.33333333333333\nfalse\n",
                 "numbers in %.14g, false")
        check_eq(ctl_ok(sw, "local x = 1"), "", "a chunk without values prints nothing")


def test_table_literal():
    with Switch() as sw:
        out = ctl_ok(sw, 'return {a = 1, b = "x", c = {1, 2}}')
        for needle in ("a = 1", 'b = "x"', "c = {"):
            check(needle in out, "table output lacks %r:\n%s" % (needle, out))
        # The literal parses back in Lua to an equal table, which prints the same.
        again = ctl_ok(sw, "return " + out, "the printed literal read back")
        check_eq(again, out, "table literal round trip")
        rc, out2, err = sw.ctl(
            "local t = " + out + " return t.a, t.b, t.c[1], t.c[2], #t.c")
        check_eq((rc, out2), (0, "1\nx\n1\n2\n2\n"), "fields of the parsed literal (%s)" % err)


def test_table_literal_keys():
    # Keys that are not identifiers must be bracketed; keys of any length mix.
    with Switch() as sw:
        chunk = ('return {abc = 1, xy = 2, z = 3, ["a-b"] = 4, ["if"] = 5, [10] = 6, '
                 '"first", nested = {k = "v", ["two words"] = true}}')
        out = ctl_ok(sw, chunk)
        for needle in ("abc = 1", "xy = 2", "z = 3", '["a-b"] = 4', '["if"] = 5',
                       "[10] = 6", '"first"', 'k = "v"', '["two words"] = true'):
            check(needle in out, "table output lacks %r:\n%s" % (needle, out))
        rc, again, err = sw.ctl("return " + out)
        check(rc == 0, "the printed literal does not parse back: %s\n%s" % (err, out))
        check_eq(again, out, "table literal round trip")


def test_errors():
    with Switch() as sw:
        rc, out, err = sw.ctl('error("boom")')
        check_eq(rc, 1, "exit code of error('boom')")
        check("boom" in err, "stderr lacks boom: %r" % err)
        check_eq(out, "", "stdout of a failed chunk")
        rc, out, err = sw.ctl("return 1 +")
        check_eq(rc, 1, "exit code of a syntax error")
        check(err.strip() != "", "a syntax error prints nothing on stderr")
        rc, out, err = sw.ctl("return nosuchfunction()")
        check_eq(rc, 1, "exit code of calling nil")
        # The switch carries on.
        check_eq(ctl_ok(sw, "return 'still here'"), "still here\n", "after errors")
        check_eq(sw.options(), 200, "OPTIONS after errors")


def test_no_switch():
    d = scratch_dir("no_switch")
    rc, out, err = moonctl(os.path.join(d, "nothing-here.sock"), "return 1")
    check_eq(rc, 2, "moonctl exit code without a switch")
    check(err.strip() != "", "moonctl says nothing when no switch answers")
    check_eq(out, "", "stdout without a switch")
    # Interactive mode too.
    rc, out, err = moonctl(os.path.join(d, "nothing-here.sock"), None, stdin=b"return 1\n")
    check_eq(rc, 2, "interactive moonctl exit code without a switch")
    # A path that is not a socket at all.
    plain = os.path.join(d, "plain-file")
    open(plain, "w").close()
    rc, out, err = moonctl(plain, "return 1")
    check_eq(rc, 2, "moonctl exit code on a regular file")
    shutil.rmtree(d, ignore_errors=True)


def test_sleep_does_not_stall_sip():
    with Switch() as sw:
        t0 = time.monotonic()
        p = sw.ctl_popen('sleep(1) return "done"')
        try:
            time.sleep(0.2)
            check(p.poll() is None, "the sleeping chunk finished too early")
            for transport in ("udp", "tcp"):
                t1 = time.monotonic()
                st = sw.options(transport, timeout=1.0)
                dt = time.monotonic() - t1
                check_eq(st, 200, "OPTIONS over %s during sleep" % transport)
                check(dt < 0.5, "OPTIONS over %s took %.3f s during sleep" % (transport, dt))
            # Another chunk runs while the first sleeps.
            t1 = time.monotonic()
            check_eq(ctl_ok(sw, "return 'other'"), "other\n", "a second chunk during sleep")
            check(time.monotonic() - t1 < 0.5, "a second chunk waited for the sleeper")
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        dt = time.monotonic() - t0
        check_eq((p.returncode, out.decode()), (0, "done\n"), "sleeping chunk (%r)" % err)
        check(0.95 <= dt < 3.0, "sleep(1) took %.2f s" % dt)


def test_time_budget():
    with Switch() as sw:
        t0 = time.monotonic()
        rc, out, err = sw.ctl("while true do end", timeout=15)
        dt = time.monotonic() - t0
        check_eq(rc, 1, "exit code of a runaway chunk")
        check(dt < 10, "a runaway chunk took %.1f s to stop" % dt)
        check("time budget" in err, "stderr lacks 'time budget': %r" % err)
        check_eq(sw.options("udp"), 200, "OPTIONS over UDP after a runaway chunk")
        check_eq(sw.options("tcp"), 200, "OPTIONS over TCP after a runaway chunk")
        check_eq(ctl_ok(sw, "return 1"), "1\n", "a chunk after a runaway chunk")
        # A runaway loop calling functions (not just a bare jump) is also stopped.
        rc, out, err = sw.ctl("local s = 0 while true do s = s + math.sin(s) end",
                              timeout=15)
        check_eq(rc, 1, "exit code of a runaway loop with calls")
        check("time budget" in err, "stderr lacks 'time budget': %r" % err)
        check(sw.alive(), "the switch died")


def test_kv():
    with Switch() as sw:
        check_eq(ctl_ok(sw, 'kv.put("k", "v")'), "", "kv.put")
        check_eq(ctl_ok(sw, 'return kv.get("k")'), "v\n", "kv.get in a second chunk")
        check_eq(ctl_ok(sw, 'return kv.get("never-set")'), "nil\n", "kv.get of a missing key")


def test_timers():
    with Switch() as sw:
        out = ctl_ok(sw, "local n = 0; local t = timer.every(0.1, function() n = n + 1 end); "
                         "sleep(0.55); t:cancel(); return n")
        n = int(out.strip())
        check(4 <= n <= 6, "timer.every(0.1) fired %d times in 0.55 s" % n)
        # A cancelled timer stays quiet.
        out = ctl_ok(sw, "local n = 0; local t = timer.every(0.05, function() n = n + 1 end); "
                         "sleep(0.12); t:cancel(); local m = n; sleep(0.2); return n - m")
        check_eq(out, "0\n", "firings after cancel")
        # One chunk, so the check does not depend on how fast moonctl starts.
        out = ctl_ok(sw, 'timer.after(0.5, function() kv.put("fired", "yes") end) '
                         'sleep(0.05) local early = kv.get("fired") '
                         'sleep(1) return tostring(early), kv.get("fired")')
        check_eq(out, "nil\nyes\n", "timer.after(0.5): not at 0.05 s, fired by 1.05 s")


def test_interactive():
    with Switch() as sw:
        p = subprocess.run([MOONCTL, "--control", sw.control], input=b"return 1+\n1\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        out = p.stdout.decode()
        check_eq(p.returncode, 0, "interactive moonctl exit code (%r)" % p.stderr)
        check("2" in out.split(), "multi-line chunk did not print 2: %r" % out)
        p = subprocess.run([MOONCTL, "--control", sw.control], input=b"1+1\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        check_eq((p.returncode, p.stdout.decode().split()), (0, ["2"]),
                 "an expression prints its value (%r)" % p.stderr)
        # Several lines, state kept between them, an error in the middle.
        p = subprocess.run([MOONCTL, "--control", sw.control],
                           input=b"x = 20\nerror('mid')\nx + 1\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        check_eq(p.stdout.decode().split(), ["21"], "state across lines")
        check("mid" in p.stderr.decode(), "the error went missing: %r" % p.stderr)


if __name__ == "__main__":
    run_tests(globals())
