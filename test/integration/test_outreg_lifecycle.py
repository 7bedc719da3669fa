"""Outbound registration over its lifetime: a registrar that never answers
(timeout, then a retry after the delay), unregister on shutdown and on
removal by reload (and none with user_agent_send_unregister = false), the
Call-ID kept across reload and restart, and a registration gateway going
offline while the registrar (Kamailio) stops answering, and back online."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import (Kamailio, Lua, SilentRegistrar, gateway_online, reg,  # noqa: E402
                   registration, registration_gateway, regs_from, switch_policy, wait_state,
                   wait_until)

# The shortest retry a policy can ask for (a function's value is held to 30..600).
RETRY_30S = Lua("function(reg) return 30 end")


def policy(entries, **sip):
    return {"00-switch.lua": switch_policy(**sip), "10-carriers.lua": entries}


def reload(sw):
    rc, out, err = sw.ctl("return reload()")
    check_eq(rc, 0, "moonctl reload() (%s)" % err)
    check(out.startswith("true"), "reload() refused: %r" % out)
    return out


def test_no_answer_is_timeout_then_retry():
    with SilentRegistrar() as silent:
        pol = policy(registration("mute", silent.port, username="150", retry_delay=RETRY_30S))
        with Switch(pol) as sw:
            first = wait_until(lambda: silent.requests(), 3, what="a REGISTER")[0]
            t0 = first["t"]
            time.sleep(max(0, t0 + 3 - time.time()))
            check_eq(reg(sw, "mute")["state"], "registering", "state 3 s into the silence")
            r = wait_state(sw, "mute", ("timeout", "failed"), 8)
            t_timeout = time.time()
            check_eq(r["state"], "timeout", "state (%r)" % r["last_error"])
            check_eq(r["failures"], 1, "failures")
            check(r["last_error"], "no last_error on timeout")
            same = [p for p in silent.requests() if p["cseq"] == first["cseq"]]
            check(len(same) >= 4, "only %d transmissions of the REGISTER (no T1 resends?)"
                  % len(same))
            check(all(p["t"] - t0 < 6.6 for p in same),
                  "resent after timer F: %r" % [round(p["t"] - t0, 2) for p in same])

            nxt = wait_until(lambda: [p for p in silent.requests()
                                      if p["cseq"] and p["cseq"] > first["cseq"]], 33,
                             what="a new REGISTER after the retry delay")[0]
            check_eq(nxt["ci"], first["ci"], "Call-ID of the retry")
            check(nxt["branch"] != first["branch"], "the retry is a new transaction")
            gap = nxt["t"] - t_timeout
            check(29.0 <= gap <= 31.5, "retry %.2f s after the timeout, want ~30 (the Lua "
                  "retry_delay)" % gap)
            # nta's timer F is 64 * T1: 6.4 s with resend_interval = 100 (the
            # switch's own watchdog fires 2 s later, and must not be what ends it).
            check(5.5 <= t_timeout - t0 <= 7.9,
                  "timeout %.2f s after the REGISTER, want ~6.4 (64 * T1 of 100 ms)\n%s"
                  % (t_timeout - t0, "\n".join(x for x in sw.log().splitlines()
                                               if "outreg" in x)))


def test_unregister_on_shutdown():
    with Kamailio() as k:
        with Switch(policy(registration("bye", k.port, username="151"))) as sw:
            r = wait_state(sw, "bye", "active", 5)
            n = len(k.registers())
            code = sw.stop()
            check_eq(code, 0, "exit code on SIGTERM")
            unreg = k.wait_for(lambda regs: [x for x in regs[n:] if x["expires"] == 0], 2,
                               "REGISTER with Expires 0 on shutdown")
            check_eq(unreg[0]["ci"], r["call_id"], "Call-ID of the unregister")
            check(unreg[0]["cseq"] > r["cseq"], "CSeq of the unregister %d, last REGISTER %d"
                  % (unreg[0]["cseq"], r["cseq"]))
            check(all(x["expires"] == 0 for x in k.registers()[n:]),
                  "REGISTERs after SIGTERM: %r" % k.registers()[n:])


def test_no_unregister_when_send_unregister_is_off():
    with Kamailio() as k:
        pol = policy(registration("stay", k.port, username="152"),
                     user_agent_send_unregister=False)
        with Switch(pol) as sw:
            wait_state(sw, "stay", "active", 5)
            n = len(k.registers())
            check_eq(sw.stop(), 0, "exit code on SIGTERM")
            time.sleep(1.0)
            check_eq(k.registers()[n:], [], "REGISTERs after SIGTERM")


def test_unregister_on_removal_by_reload():
    with Kamailio() as k:
        keep = registration("keep", k.port, username="153")
        gone = registration("gone", k.port, username="154")
        with Switch(policy(keep + gone)) as sw:
            wait_state(sw, "keep", "active", 5)
            g = wait_state(sw, "gone", "active", 5)
            n = len(k.registers())
            sw.write_policy("10-carriers.lua", keep)
            reload(sw)
            unreg = k.wait_for(lambda regs: [x for x in regs_from(regs[n:], "154")
                                             if x["expires"] == 0], 3,
                               "REGISTER with Expires 0 for the removed entry")
            check_eq(unreg[0]["ci"], g["call_id"], "Call-ID of the unregister")
            check(reg(sw, "gone") is None, "registrations.gone still exists")
            time.sleep(0.3)
            check_eq(regs_from(k.registers()[n:], "153"), [],
                     "the unchanged entry registered again on reload")
            check_eq(reg(sw, "keep")["state"], "active", "state of the unchanged entry")


def test_call_id_kept_across_reload_and_restart():
    with Kamailio() as k:
        def entries(ua_a="ua-1", ua_b="ua-1"):
            return (registration("a", k.port, username="155", user_agent=ua_a)
                    + registration("b", k.port, username="156", user_agent=ua_b))

        with Switch(policy(entries())) as sw:
            a = wait_state(sw, "a", "active", 5)
            wait_state(sw, "b", "active", 5)
            ci_a = regs_from(k.registers(), "155")[-1]["ci"]
            check_eq(ci_a, a["call_id"], "registrations.a.call_id")

            # An unrelated change: b registers again, a keeps everything.
            n = len(k.registers())
            sw.write_policy("10-carriers.lua", entries(ua_b="ua-2"))
            reload(sw)
            k.wait_for(lambda regs: [x for x in regs_from(regs[n:], "156")
                                     if x["ua"] == "ua-2"], 3, "b registering again")
            a2 = reg(sw, "a")
            check_eq((a2["state"], a2["call_id"]), ("active", ci_a), "a after the reload")
            sw.ctl("return registrations.a:refresh()")
            x = k.wait_for(lambda regs: regs_from(regs[n:], "155"), 3, "a's refresh")[0]
            check_eq(x["ci"], ci_a, "Call-ID of a after an unrelated reload")

            # a itself changes: a new REGISTER, the same Call-ID, a higher CSeq.
            before = max(x["cseq"] for x in regs_from(k.registers(), "155"))
            n = len(k.registers())
            sw.write_policy("10-carriers.lua", entries(ua_a="ua-3", ua_b="ua-2"))
            reload(sw)
            x = k.wait_for(lambda regs: [x for x in regs_from(regs[n:], "155")
                                         if x["ua"] == "ua-3"], 3, "a registering again")[0]
            check_eq(x["ci"], ci_a, "Call-ID of a after its own change")
            check(x["cseq"] > before, "CSeq %d after reload, was %d" % (x["cseq"], before))
            wait_state(sw, "a", "active", 3)

            # Restart with the same data directory.
            before = max(x["cseq"] for x in regs_from(k.registers(), "155"))
            check_eq(sw.stop(), 0, "exit code on SIGTERM")
            n = len(k.registers())
            sw.start()
            a3 = wait_state(sw, "a", "active", 5)
            check_eq(a3["call_id"], ci_a, "registrations.a.call_id after a restart")
            x = regs_from(k.registers()[n:], "155")
            check(x, "no REGISTER from a after the restart")
            check_eq(x[0]["ci"], ci_a, "Call-ID on the wire after a restart")
            check(x[0]["cseq"] > before, "CSeq %d after restart, was %d"
                  % (x[0]["cseq"], before))


def test_gateway_offline_while_registrar_is_silent():
    with Kamailio(max_expires=20) as k:
        pol = policy(registration("carrier", k.port, username="157", retry_delay=RETRY_30S)
                     + registration_gateway("gw", "carrier", "127.0.0.1:%d" % k.port))
        with Switch(pol) as sw:
            r = wait_state(sw, "carrier", "active", 5)
            check_eq(r["expires"], 20, "granted expiry")
            check(gateway_online(sw, "gw"), "gateway offline while registered")
            k.pause()  # SIGSTOP: REGISTERs stay unanswered
            t0 = time.time()
            r = wait_state(sw, "carrier", ("timeout", "expired", "failed"), 22)
            left = time.time() - t0
            check(r["state"] in ("timeout", "expired"), "state %r (%r)"
                  % (r["state"], r["last_error"]))
            check(not gateway_online(sw, "gw"), "gateway still online in state %s"
                  % r["state"])
            check(left <= 21, "left active %.1f s after the registrar stopped" % left)

            # The registrar comes back (a new process on the same port); the
            # entry registers again at its retry, 30 s after it gave up.
            k.kill()
            k.start()
            r = wait_state(sw, "carrier", "active", 35)
            check(gateway_online(sw, "gw"), "gateway offline after re-registering")
            check_eq(r["failures"], 0, "failures after success")


if __name__ == "__main__":
    run_tests(globals())
