"""Timers as docs/scripting.md describes them: order of firing, each firing
in its own task, errors, and what a reload does (the old policy's timers
stop; a callback already running finishes in the old state)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import switch_policy  # noqa: E402

SWITCH = switch_policy(resend_interval=100)


def lua(sw, chunk, timeout=30):
    rc, out, err = sw.ctl(chunk, timeout=timeout)
    check(rc == 0, "moonctl -e failed (rc %d): %s\nchunk: %s\n%s"
          % (rc, err.strip(), chunk, sw.log_tail(20)))
    return out.rstrip("\n").split("\n") if out else []


def test_deadline_order():
    """Timers fire in the order of their deadlines, not of their creation."""
    with Switch({"00-switch.lua": SWITCH}) as sw:
        out = lua(sw, """
            local seq = {}
            for i = 1, 20 do
              timer.after(0.02 * (21 - i), function() seq[#seq + 1] = i end)
            end
            timer.after(0, function() seq[#seq + 1] = 0 end)
            sleep(0.6)
            return table.concat(seq, ",")
        """)
        check_eq(out, [",".join(["0"] + [str(i) for i in range(20, 0, -1)])],
                 "firing order of 21 timers")
        # Deadlines within a millisecond of each other, created in one go.
        out = lua(sw, """
            local seq = {}
            for i = 1, 30 do
              local d = 0.001 * (i % 3)
              timer.after(d, function() seq[#seq + 1] = i % 3 end)
            end
            sleep(0.1)
            return table.concat(seq, "")
        """)
        check_eq(out, ["0" * 10 + "1" * 10 + "2" * 10], "groups by deadline")


def test_every_each_firing_a_task():
    """timer.every runs each firing in a new task: a callback that sleeps
    does not delay the next firing; cancel() stops it; fired counts."""
    with Switch({"00-switch.lua": SWITCH}) as sw:
        out = lua(sw, """
            local started, finished = 0, 0
            local t = timer.every(0.1, function()
              started = started + 1
              sleep(0.35)
              finished = finished + 1
            end)
            sleep(0.55)
            local running = started - finished
            local was = t:cancel()
            local fired = t.fired
            sleep(0.5)
            return started, running >= 3, was, t.active, fired == started, t:cancel()
        """)
        check_eq(out[1:], ["true", "true", "false", "true", "false"],
                 "overlapping firings, cancel, active, fired")
        check(4 <= int(out[0]) <= 6, "timer.every(0.1) fired %s times in 0.55 s" % out[0])


def test_timer_errors():
    with Switch({"00-switch.lua": SWITCH}) as sw:
        for chunk, needle in [("timer.after(-1, function() end)", ">= 0"),
                              ("timer.every(0, function() end)", "0.001"),
                              ("timer.after(1, 'not a function')", "function expected"),
                              ("timer.after('soon', function() end)", "number expected")]:
            rc, out, err = sw.ctl(chunk)
            check(rc == 1 and needle in err, "%s: rc %d, %r" % (chunk, rc, err))
        # A callback that raises is logged; an every-timer keeps firing.
        out = lua(sw, """
            local n = 0
            local t = timer.every(0.05, function() n = n + 1 error("tick failed " .. n) end)
            sleep(0.28)
            t:cancel()
            return n
        """)
        check(int(out[0]) >= 4, "the failing every-timer fired %s times" % out[0])
        check(sw.wait_log("timer callback:", 2) and "tick failed 1" in sw.log(),
              "the callback's error is not logged\n%s" % sw.log_tail())


TICKER = '''-- generation %(gen)s
version = "%(gen)s"
ticker = timer.every(0.05, function()
  kv.put("ticks-%(gen)s", (kv.get("ticks-%(gen)s") or 0) + 1)
end)
timer.after(0.2, function()
  kv.put("slow-started-%(gen)s", version)
  sleep(1)
  kv.put("slow-done-%(gen)s", version)   -- the state it started in
end)
'''


def test_reload_stops_old_timers():
    """A reload stops the old policy's timers (the new one arms its own);
    a callback already running finishes, in the old state."""
    with Switch({"00-switch.lua": SWITCH, "20-ticker.lua": TICKER % {"gen": "one"}}) as sw:
        time.sleep(0.5)  # the slow callback of "one" is now sleeping
        check_eq(lua(sw, 'return kv.get("slow-started-one")'), ["one"], "slow callback started")
        sw.write_policy("20-ticker.lua", TICKER % {"gen": "two"})
        check_eq(lua(sw, "return (reload())"), ["true"], "reload")
        before = int(lua(sw, 'return kv.get("ticks-one")')[0])
        time.sleep(0.5)
        after = int(lua(sw, 'return kv.get("ticks-one")')[0])
        check(after <= before + 1, "the old ticker went on after the reload: %d -> %d"
              % (before, after))
        check(before >= 5, "the old ticker ticked only %d times in 0.5 s" % before)
        two = lua(sw, 'return kv.get("ticks-two")')[0]
        check(two != "nil" and int(two) >= 5, "the new policy's ticker: %r" % two)
        # The old slow callback (sleeping since 0.2 s) ends at about 1.2 s.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            done = lua(sw, 'return kv.get("slow-done-one")')[0]
            if done != "nil":
                break
            time.sleep(0.1)
        check_eq(done, "one", "the callback running across the reload finished, in its state")
        # The REPL runs in the new state.
        check_eq(lua(sw, "return version"), ["two"], "the REPL's state after the reload")


if __name__ == "__main__":
    run_tests(globals())
