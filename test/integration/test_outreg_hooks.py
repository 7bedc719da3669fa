"""Outbound registration seen from policies, against a scripted registrar
(a Python UDP peer that answers as each test says): on_registration(reg,
old_state, new_state) once per change of state and in order; a 403 is
`failed`, status 403, retried after retry_delay; a refresh unanswered past
the granted expiry is `expired`, then `timeout`; a retry_delay function's
value is held to 30..600 s and that is logged once; local_ip chooses the
listener REGISTERs leave from, and a local_ip the switch does not listen on
is refused with its file and line."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import (Lua, UdpPeer, ctl_value, reg, registration, switch_policy,  # noqa: E402
                   wait_state, wait_until)

# Each change as one line in kv: "name old>new".
HOOK = """
function on_registration(reg, old_state, new_state)
  local n = (kv.get("n") or 0) + 1
  kv.put("n", n)
  kv.put("ev" .. n, reg.name .. " " .. old_state .. ">" .. new_state)
  kv.put("now" .. n, reg.state)
end
"""

EVENTS = """
local out = {}
for i = 1, (kv.get("n") or 0) do out[#out + 1] = kv.get("ev" .. i) end
return table.concat(out, ",")
"""


def events(sw):
    text = ctl_value(sw, EVENTS)
    return text.split(",") if text else []


def wait_events(sw, want, timeout):
    """Wait until the hook has recorded `want` (a list) from the start."""
    got = wait_until(lambda: events(sw)[:len(want)] == want and events(sw), timeout)
    check(got, "on_registration recorded %r, want %r\n%s" % (events(sw), want,
                                                            sw.log_tail()))
    return got


def policy(entries, hook="", **sip):
    return {"00-switch.lua": switch_policy(**sip), "10-carriers.lua": entries + hook}


class Registrar(UdpPeer):
    """A registrar on 127.0.0.1 that answers each REGISTER as answer(n, req)
    says, n counting from 0: (status, reason, expires or None), or None for
    no answer. Keeps every REGISTER: t, src (ip, port), cseq, expires,
    contact, via, call_id."""

    def __init__(self, answer):
        self.answer = answer
        self.got = []
        super().__init__()

    def on_datagram(self, data, addr):
        text = data.decode("utf-8", "replace")
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        if not head[0].startswith("REGISTER "):
            return
        compact = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact"}
        hdrs = []
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            hdrs.append((compact.get(name, name), value.strip()))

        def first(name):
            return next((v for n, v in hdrs if n == name), None)

        req = {"t": time.time(), "src": addr, "cseq": int(first("cseq").split()[0]),
               "expires": first("expires"), "contact": first("contact"),
               "via": first("via"), "call_id": first("call-id")}
        with self.lock:
            n = len(self.got)
            self.got.append(req)
        reply = self.answer(n, req)
        if reply is None:
            return
        status, reason, expires = reply
        out = ["SIP/2.0 %d %s" % (status, reason)]
        out += ["Via: %s" % v for n, v in hdrs if n == "via"]
        out += ["From: %s" % first("from"), "To: %s;tag=reg1" % first("to"),
                "Call-ID: %s" % first("call-id"), "CSeq: %s" % first("cseq")]
        if expires is not None:
            out.append("Contact: %s;expires=%d" % (first("contact"), expires))
        out += ["Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(out).encode(), addr)

    def registers(self):
        with self.lock:
            return list(self.got)


def ok(expires):
    return lambda n, req: (200, "OK", expires if req["expires"] != "0" else 0)


def forbidden(n, req):
    return (403, "Forbidden", None)


def test_on_registration_sees_each_change_in_order():
    with Registrar(ok(300)) as peer:
        entries = registration("hooked", peer.port, username="170")
        with Switch(policy(entries, HOOK)) as sw:
            wait_events(sw, ["hooked registering>active"], 5)
            ctl_value(sw, 'return registrations.hooked:disable()')
            ctl_value(sw, 'return registrations.hooked:enable()')
            want = ["hooked registering>active", "hooked active>disabled",
                    "hooked disabled>registering", "hooked registering>active"]
            wait_events(sw, want, 5)
            # reg is the live handle: at the first change it read active.
            check_eq(ctl_value(sw, 'return kv.get("now1")'), "active", "reg.state in the hook")
            # A refresh keeps the state: no call.
            ctl_value(sw, 'return registrations.hooked:refresh()')
            wait_until(lambda: len(peer.registers()) >= 4, 3, what="the refresh")
            time.sleep(0.5)
            check_eq(events(sw), want, "changes after a refresh")
            # Removed by a reload: the un-REGISTER is a change to disabled,
            # and the handle reads "removed".
            sw.write_policy("10-carriers.lua", HOOK)
            check(ctl_value(sw, "return reload()").startswith("true"), "reload refused")
            want.append("hooked active>disabled")
            wait_events(sw, want, 5)
            check_eq(ctl_value(sw, 'return kv.get("now5")'), "removed",
                     "reg.state in the hook of a removed registration")
            check_eq(len(events(sw)), 5, "changes after the removal: %r" % events(sw))


def test_on_registration_error_is_logged_and_later_changes_still_run():
    hook = """
function on_registration(reg, old_state, new_state)
  kv.put("last", old_state .. ">" .. new_state)
  if new_state == "active" then error("hook-boom") end
end
"""
    with Registrar(ok(300)) as peer:
        with Switch(policy(registration("err", peer.port, username="171"), hook)) as sw:
            wait_state(sw, "err", "active", 5)
            check(sw.wait_log("hook-boom", 3), "the hook's error is not logged\n%s"
                  % sw.log_tail())
            line = [x for x in sw.log().splitlines() if "hook-boom" in x][0]
            check("on_registration" in line, "the error line names no hook: %r" % line)
            ctl_value(sw, 'return registrations.err:disable()')
            wait_until(lambda: ctl_value(sw, 'return kv.get("last")') == "active>disabled",
                       3, what="the hook after an earlier error")


def test_403_is_failed_and_retried_after_retry_delay():
    with Registrar(forbidden) as peer:
        entries = registration("refused", peer.port, username="172", retry_delay=30)
        with Switch(policy(entries, HOOK)) as sw:
            r = wait_state(sw, "refused", "failed", 5)
            first = peer.registers()[0]
            check_eq(r["status"], 403, "status")
            check_eq(r["failures"], 1, "failures")
            check("403" in (r["last_error"] or ""), "last_error %r" % r["last_error"])
            left = r["next_refresh"] - first["t"]
            check(28.5 <= left <= 31.5, "next_refresh %.1f s after the REGISTER, want ~30"
                  % left)
            check_eq(len(peer.registers()), 1, "REGISTERs before the retry (a 403 is not "
                     "retried at once)")
            wait_events(sw, ["refused registering>failed"], 3)
            second = wait_until(lambda: peer.registers()[1:], 35,
                                what="the retry")[0]
            gap = second["t"] - first["t"]
            check(29.0 <= gap <= 32.0, "retry %.2f s after the first REGISTER, want ~30" % gap)
            check_eq(second["call_id"], first["call_id"], "Call-ID of the retry")
            check(second["cseq"] > first["cseq"], "CSeq of the retry")
            r = wait_state(sw, "refused", "failed", 3, extra=lambda r: r["failures"] == 2)
            check_eq(r["status"], 403, "status after the retry")
            wait_events(sw, ["refused registering>failed", "refused failed>registering",
                             "refused registering>failed"], 3)


def test_refresh_unanswered_past_the_grant_is_expired():
    # 200 granting 4 s to the first REGISTER, then silence: the refresh
    # leaves at 2 s, the grant runs out at 4 s with it unanswered (expired),
    # and nta gives up on it at 2 + 64 * T1 = 8.4 s (timeout).
    with Registrar(lambda n, req: (200, "OK", 4) if n == 0 else None) as peer:
        entries = registration("short", peer.port, username="173")
        with Switch(policy(entries, HOOK)) as sw:
            r = wait_state(sw, "short", "active", 5)
            t0 = peer.registers()[0]["t"]
            check_eq(r["expires"], 4, "granted expiry")
            r = wait_state(sw, "short", ("expired", "timeout"), 6)
            at = time.time() - t0
            check_eq(r["state"], "expired", "state once the grant ran out")
            check(3.5 <= at <= 5.5, "expired %.1f s after the 200, want ~4" % at)
            check_eq(r["expires"], 0, "expires while expired")
            check("expired" in (r["last_error"] or ""), "last_error %r" % r["last_error"])
            refresh = [x for x in peer.registers() if x["cseq"] > peer.registers()[0]["cseq"]]
            check(refresh and 1.5 <= refresh[0]["t"] - t0 <= 2.8,
                  "the refresh should leave at half the grant: %r"
                  % [round(x["t"] - t0, 2) for x in peer.registers()])
            r = wait_state(sw, "short", "timeout", 6)
            wait_events(sw, ["short registering>active", "short active>expired",
                             "short expired>timeout"], 3)


def test_retry_delay_function_is_clamped_and_logged_once():
    with Registrar(forbidden) as peer:
        entries = (registration("fast", peer.port, username="174",
                                retry_delay=Lua("function(reg) return 1 end"))
                   + registration("slow", peer.port, username="175",
                                  retry_delay=Lua("function(reg) return 5000 end"))
                   + registration("grow", peer.port, username="176",
                                  retry_delay=Lua("function(reg) "
                                                  "return 40 + 10 * reg.failures end")))
        with Switch(policy(entries)) as sw:
            for name, want in (("fast", 30), ("slow", 600), ("grow", 50)):
                t = time.time()
                r = wait_state(sw, name, "failed", 5)
                left = r["next_refresh"] - t
                check(want - 3 <= left <= want + 1, "%s: next retry in %.1f s, want %d"
                      % (name, left, want))
            # Fail again, twice: the function sees the live entry, and the
            # clamp is not logged at every retry.
            for n in (2, 3):
                for name in ("fast", "slow", "grow"):
                    ctl_value(sw, "return registrations[%r]:refresh()" % name)
                for name in ("fast", "slow", "grow"):
                    wait_state(sw, name, "failed", 5, extra=lambda r, n=n: r["failures"] == n)
            t = time.time()
            r = reg(sw, "grow")
            left = r["next_refresh"] - t
            check(67 <= left <= 71, "grow: next retry in %.1f s after 3 failures, want 70"
                  % left)
            check_eq(reg(sw, "fast")["failures"], 3, "fast's failures")
            log = sw.log().splitlines()
            for name, value, used in (("fast", "1", 30), ("slow", "5000", 600)):
                lines = [x for x in log if re.search(r"\b%s: retry_delay returned" % name, x)]
                check_eq(len(lines), 1, "clamp lines for %s %r" % (name, lines))
                check("%s s" % value in lines[0] and "%d s used" % used in lines[0],
                      "clamp line %r" % lines[0])
            check(not any("grow: retry_delay returned" in x for x in log),
                  "a value in range was reported as clamped")
            check("retrying in 1 s" not in sw.log(), "a 1 s retry was scheduled")


def test_local_ip_chooses_the_listener_registers_leave_from():
    with Registrar(ok(300)) as peer:
        entries = (registration("second", peer.port, username="177", local_ip="127.0.0.2")
                   + registration("plain", peer.port, username="178"))
        sw = Switch(policy(entries))
        other = sw.port + 1 if sw.port < 65000 else sw.port - 1
        sw.extra_args = ["--listen", "udp:127.0.0.2:%d" % other]
        with sw:
            wait_state(sw, "second", "active", 5)
            wait_state(sw, "plain", "active", 5)
            by_user = {}
            for x in peer.registers():
                by_user.setdefault(re.search(r"sip:(\d+)@", x["contact"]).group(1), x)
            second, plain = by_user["177"], by_user["178"]
            check_eq(second["src"], ("127.0.0.2", other), "source of local_ip's REGISTER")
            check("sip:177@127.0.0.2:%d" % other in second["contact"],
                  "Contact %r" % second["contact"])
            check("127.0.0.2:%d" % other in second["via"], "Via %r" % second["via"])
            check_eq(plain["src"], ("127.0.0.1", sw.port), "source without local_ip")
            check_eq(reg(sw, "second")["contact"], "sip:177@127.0.0.2:%d" % other,
                     "registrations.second.contact")

            # A local_ip the switch does not listen on: refused, file:line.
            sw.write_policy("10-carriers.lua", "\n\n" + registration(
                "second", peer.port, username="177", local_ip="127.0.0.9"))
            rc, out, err = sw.ctl("return reload()")
            check_eq(rc, 0, "moonctl reload() (%s)" % err)
            check(out.startswith("nil") and "10-carriers.lua:3" in out and
                  "local_ip 127.0.0.9 is not one of the listen addresses" in out,
                  "reload() should refuse with file:line: %r" % out)
            check_eq(reg(sw, "second")["state"], "active", "the running policy stays")


if __name__ == "__main__":
    run_tests(globals())
