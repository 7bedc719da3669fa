"""Policy reload: reload() from the REPL with its summary, a refused reload
that keeps the running policy, SIGHUP, and a reload under a sleeping chunk."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, free_port, run_tests  # noqa: E402

SUMMARY = re.compile(r"^(\d+) added, (\d+) changed, (\d+) removed, (\d+) unchanged$")

# Registrations point at a port where nothing listens, so that a switch that
# registers for real sends its REGISTERs nowhere that matters.
DEAD_PORT = free_port()


def registration(name, password="p", line_prefix=""):
    return ('%sregistration "%s" { server = "127.0.0.1", port = %d, username = "u", '
            'password = "%s" }\n' % (line_prefix, name, DEAD_PORT, password))


def reload(sw):
    """Run reload() through moonctl; (ok, second line)."""
    rc, out, err = sw.ctl("return reload()")
    check_eq(rc, 0, "moonctl exit code of reload() (stderr %r)" % err)
    lines = out.rstrip("\n").split("\n")
    check(len(lines) == 2, "reload() should return two values, got %r" % out)
    check(lines[0] in ("true", "nil"), "reload()'s first value: %r" % lines[0])
    return lines[0] == "true", lines[1]


def summary(text):
    m = SUMMARY.match(text)
    check(m is not None, "reload summary %r is not 'N added, N changed, N removed, "
          "N unchanged'" % text)
    return tuple(int(x) for x in m.groups())


def test_reload_summary_and_refusal():
    with Switch({"10-a.lua": registration("a")}) as sw:
        ok, msg = reload(sw)
        check(ok, "reload of unchanged policies failed: %s" % msg)
        added, changed, removed, unchanged = summary(msg)
        check_eq((added, changed, removed), (0, 0, 0), "unchanged reload")
        check(unchanged >= 1, "unchanged count %d should include registration a" % unchanged)
        base_unchanged = unchanged

        # Add b, change a.
        sw.write_policy("10-a.lua", registration("a", password="p2"))
        sw.write_policy("20-b.lua", registration("b"))
        ok, msg = reload(sw)
        check(ok, "reload with b added and a changed failed: %s" % msg)
        check(msg.startswith("1 added, 1 changed, 0 removed, "), "summary %r" % msg)
        check_eq(summary(msg)[3], base_unchanged - 1, "unchanged after changing a")

        # A broken file: an unknown field on a known line.
        sw.write_policy("30-broken.lua",
                        "-- a broken policy\n\n"
                        'registration "c" { sever = "x", username = "u", password = "p" }\n')
        ok, msg = reload(sw)
        check(not ok, "a policy with an unknown field was accepted: %s" % msg)
        check("30-broken.lua:3:" in msg, "the error does not name 30-broken.lua:3: %r" % msg)
        check("sever" in msg, "the error does not name the field 'sever': %r" % msg)
        check_eq(sw.options("udp"), 200, "OPTIONS over UDP after a refused reload")
        check_eq(sw.options("tcp"), 200, "OPTIONS over TCP after a refused reload")
        check(sw.wait_log("reload refused", 2), "the log does not mention the refusal")

        # Fixed: the running policy (a changed, b) was kept, so only c is new.
        sw.write_policy("30-broken.lua", registration("c"))
        ok, msg = reload(sw)
        check(ok, "reload after fixing the file failed: %s" % msg)
        check(msg.startswith("1 added, 0 changed, 0 removed, "),
              "summary after the fix (relative to the kept policy): %r" % msg)

        # Removing files.
        sw.remove_policy("20-b.lua")
        sw.remove_policy("30-broken.lua")
        ok, msg = reload(sw)
        check(ok, "reload after removing files failed: %s" % msg)
        check(msg.startswith("0 added, 0 changed, 2 removed, "), "summary %r" % msg)


def test_reload_lua_error_keeps_policy():
    with Switch({"10-a.lua": registration("a")}) as sw:
        sw.ctl('kv.put("survives", "reloads")')
        sw.write_policy("20-bad.lua", "local x = 1\nerror('policy exploded')\n")
        ok, msg = reload(sw)
        check(not ok, "a policy raising an error was accepted")
        check("20-bad.lua:2:" in msg and "policy exploded" in msg, "message %r" % msg)
        sw.write_policy("20-bad.lua", "local x = \n")
        ok, msg = reload(sw)
        check(not ok, "a policy with a syntax error was accepted")
        check("20-bad.lua:" in msg, "message %r" % msg)
        sw.remove_policy("20-bad.lua")
        ok, msg = reload(sw)
        check(ok and msg.startswith("0 added, 0 changed, 0 removed, "),
              "reload after removing the bad file: %s %r" % (ok, msg))
        rc, out, _ = sw.ctl('return kv.get("survives")')
        check_eq(out, "reloads\n", "kv across reloads")


def test_sighup():
    with Switch({"10-a.lua": registration("a")}) as sw:
        sw.write_policy("20-b.lua", registration("b"))
        before = sw.log().count("reloaded")
        sw.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sw.log().count("reloaded") == before:
            time.sleep(0.05)
        log = sw.log()
        check(log.count("reloaded") > before, "no 'reloaded' in the log after SIGHUP\n%s"
              % sw.log_tail())
        check("1 added, 0 changed, 0 removed" in log, "the SIGHUP summary is not logged\n%s"
              % sw.log_tail())
        check(sw.alive(), "SIGHUP ended the switch")
        check_eq(sw.options(), 200, "OPTIONS after SIGHUP")
        # The reload took: a REPL reload now finds nothing new.
        ok, msg = reload(sw)
        check(ok and msg.startswith("0 added, 0 changed, 0 removed, "), "after SIGHUP: %r" % msg)

        # A broken policy on SIGHUP is refused, logged, and the switch carries on.
        sw.write_policy("30-bad.lua", 'registration "x" { server = 5 }\n')
        n = sw.log().count("reload refused")
        sw.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sw.log().count("reload refused") == n:
            time.sleep(0.05)
        check(sw.log().count("reload refused") > n, "a refused SIGHUP reload is not logged")
        check("30-bad.lua:1:" in sw.log(), "the refusal does not name 30-bad.lua:1")
        check(sw.alive(), "a bad SIGHUP reload ended the switch")
        check_eq(sw.options(), 200, "OPTIONS after a refused SIGHUP reload")


def test_reload_during_sleeping_chunk():
    with Switch({"10-a.lua": registration("a")}) as sw:
        p = sw.ctl_popen('sleep(1) return "old-done"')
        try:
            time.sleep(0.2)
            sw.write_policy("10-a.lua", registration("a", password="new"))
            ok, msg = reload(sw)
            check(ok and msg.startswith("0 added, 1 changed, 0 removed, "),
                  "reload during a sleeping chunk: %s %r" % (ok, msg))
            # Reload again (a second generation) while the old chunk still sleeps.
            ok, msg = reload(sw)
            check(ok, "second reload during a sleeping chunk: %r" % msg)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        check_eq((p.returncode, out.decode()), (0, "old-done\n"),
                 "the chunk started before the reload (stderr %r)" % err)
        check_eq(sw.options(), 200, "OPTIONS after the reloads")
        rc, out, _ = sw.ctl("return 'new-generation'")
        check_eq(out, "new-generation\n", "a chunk after the reloads")


if __name__ == "__main__":
    run_tests(globals())
