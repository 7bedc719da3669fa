"""Outbound registration failures against a real registrar (Kamailio with
test/kamailio/registrar.cfg): the wrong password is failed and retried once
per retry delay, not stormed; a Lua retry_delay function sets the delays
(held to 30..600 s: test_outreg_hooks.py); a retry_delay function that
errors falls back to the switch setting."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import (Kamailio, Lua, attempts, registration, switch_policy,  # noqa: E402
                   wait_state)


def policy(entries, **sip):
    return {"00-switch.lua": switch_policy(**sip), "10-carriers.lua": entries}


def test_wrong_password_is_failed_without_storm():
    with Kamailio() as k:
        pol = policy(registration("bad", k.port, username="130", password="wrong",
                                  retry_delay=30))
        with Switch(pol) as sw:
            r = wait_state(sw, "bad", ("failed", "active"), 5)
            now = time.time()
            check_eq(r["state"], "failed", "state with a wrong password")
            check_eq(r["status"], 401, "status")
            check_eq(r["failures"], 1, "failures")
            check(r["last_error"] and "authentication" in r["last_error"].lower(),
                  "last_error should mention authentication: %r" % r["last_error"])
            check(r["next_refresh"] and 28 <= r["next_refresh"] - now <= 31,
                  "next_refresh should be ~30 s away: %r" % (r["next_refresh"] - now))

            t0 = k.registers()[0]["t"]
            # Watch until a little after the retry is due.
            time.sleep(max(0, t0 + 34 - time.time()))
            regs = k.registers()
            groups = attempts(regs)
            desc = [(round(x["t"] - t0, 2), x["cseq"], x["auth"]) for x in regs]
            check_eq(len(groups[0]), 2, "REGISTERs in the first attempt (challenge + "
                     "credentials) %r" % desc)
            check_eq(len(groups), 2, "attempts within 34 s with retry_delay 30 %r" % desc)
            gap = groups[1][0]["t"] - t0
            check(29.0 <= gap <= 32.0, "second attempt %.2f s after the first, want ~30" % gap)
            check(len(groups[1]) <= 2, "REGISTERs in the second attempt %r" % desc)
            check(len(k.authfails()) >= 2, "registrar saw %d bad credentials"
                  % len(k.authfails()))
            r = wait_state(sw, "bad", "failed", 3, extra=lambda r: r["failures"] == 2)
            check_eq(r["status"], 401, "status after the second attempt")


def test_lua_retry_function_sets_the_delays():
    with Kamailio() as k:
        pol = policy(registration("grow", k.port, username="131", password="wrong",
                                  retry_delay=Lua("function(reg) "
                                                  "return 40 + 10 * reg.failures end")))
        with Switch(pol) as sw:
            # Each failure asks the function again, with the live entry; the
            # operator's refresh() stands in for waiting out each delay.
            for failures, want in ((1, 50), (2, 60), (3, 70)):
                if failures > 1:
                    sw.ctl("return registrations.grow:refresh()")
                r = wait_state(sw, "grow", "failed", 5,
                               extra=lambda r, n=failures: r["failures"] == n)
                left = r["next_refresh"] - time.time()
                check(want - 2 <= left <= want + 1,
                      "after %d failures the next retry is in %.1f s, want %d"
                      % (failures, left, want))
            regs = k.registers()
            check(3 <= len(regs) <= 6, "%d REGISTERs for 3 attempts (a challenge and "
                  "credentials each at most)" % len(regs))
            check("retry_delay returned" not in sw.log(),
                  "a delay in range was reported as clamped")


def test_lua_retry_function_error_falls_back():
    with Kamailio() as k:
        entries = (registration("boom", k.port, username="132", password="wrong",
                                retry_delay=Lua('function(reg) error("boom-in-retry") end'))
                   + registration("silly", k.port, username="133", password="wrong",
                                  retry_delay=Lua('function(reg) return "soon" end')))
        with Switch(policy(entries, user_agent_retry_delay=45)) as sw:
            for name in ("boom", "silly"):
                r = wait_state(sw, name, "failed", 5)
                left = r["next_refresh"] - time.time()
                check(43 <= left <= 46, "%s: next retry in %.1f s, want the switch setting 45"
                      % (name, left))
            check(sw.wait_log("boom-in-retry", 3),
                  "the retry function's error is not logged\n%s" % sw.log_tail())
            log = sw.log()
            line = [x for x in log.splitlines() if "boom-in-retry" in x][0]
            check('"boom"' in line and "retry_delay" in line,
                  "the log line should name the entry and retry_delay: %r" % line)
            check(any("silly" in x and "retry_delay" in x for x in log.splitlines()),
                  "no log line about silly's retry_delay returning a string\n%s"
                  % sw.log_tail())
            check("retrying in 45 s" in log, "no 'retrying in 45 s' in the log")


if __name__ == "__main__":
    run_tests(globals())
