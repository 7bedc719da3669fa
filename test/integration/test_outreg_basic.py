"""Outbound registration against a real registrar (Kamailio with
test/kamailio/registrar.cfg): success, the refresh half-way, the auth user
name, SHA-256, 423 with Min-Expires, the Privacy header, many entries at
start-up, the operator's methods, and dynamic mode against a SIPp registrar
that reports another public address."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import (Kamailio, Sipp, gateway_online, registration,  # noqa: E402
                   registration_gateway, regs_from, switch_policy, wait_state, wait_until)


def policy(k, entries, **sip):
    return {"00-switch.lua": switch_policy(**sip), "10-carriers.lua": entries}


def test_success():
    with Kamailio(max_expires=300) as k:
        pol = policy(k, registration("carrier", k.port, username="100",
                                     hostname="carrier.example", user_agent="moon-test/1")
                     + registration_gateway("carrier-gw", "carrier", "127.0.0.1:%d" % k.port))
        with Switch(pol) as sw:
            r = wait_state(sw, "carrier", "active", 5)
            check_eq(r["status"], 200, "status")
            check_eq(r["expires"], 300, "expires (granted by the registrar)")
            check_eq(r["failures"], 0, "failures")
            check_eq(r["contact"], "sip:100@127.0.0.1:%d" % sw.port, "contact")
            check(r["last_error"] is None, "last_error after success: %r" % r["last_error"])
            check(r["next_refresh"] and 140 <= r["next_refresh"] - time.time() <= 151,
                  "next_refresh should be ~150 s away: %r" % r["next_refresh"])
            check(gateway_online(sw, "carrier-gw"), "registration gateway not online")

            regs = regs_from(k.registers(), "100")
            check(len(regs) >= 1, "no REGISTER at the registrar")
            last = regs[-1]
            check_eq(last["from_"], "sip:100@carrier.example", "From URI")
            check_eq(last["contact"], "<sip:100@127.0.0.1:%d>" % sw.port, "Contact")
            check_eq(last["auth"], "100", "digest user of the accepted REGISTER")
            check_eq(last["ua"], "moon-test/1", "User-Agent")
            check_eq(last["privacy"], "<null>", "Privacy (ignore by default)")
            check_eq(last["ci"], r["call_id"], "Call-ID seen by the registrar")
            check(all(x["ci"] == last["ci"] for x in regs), "Call-ID changed: %r" % regs)

            # The password is readable nowhere.
            check(r["password"] is None, "registrations.carrier.password is readable")
            rc, out, err = sw.ctl("return tostring(registrations)")
            check_eq(rc, 0, "moonctl tostring(registrations) (%s)" % err)
            check("carrier" in out and "active" in out, "status table: %r" % out)
            check("100-secret" not in out, "the password is in the status table:\n%s" % out)
            rc, out, err = sw.ctl("return registrations")
            check("100-secret" not in out, "the password is printed:\n%s" % out)
            rc, out, err = sw.ctl("return registrations()")
            check(rc == 0 and "carrier" in out, "registrations(): %r %r" % (out, err))
            check("100-secret" not in sw.log(), "the password is in the switch log")


def test_refresh_at_half_of_granted_expiry():
    with Kamailio(max_expires=20) as k:
        with Switch(policy(k, registration("short", k.port, username="101"))) as sw:
            r = wait_state(sw, "short", "active", 5)
            check_eq(r["expires"], 20, "granted expiry")
            first = regs_from(k.registers(), "101")
            last_ok = first[-1]
            refresh = k.wait_for(
                lambda regs: [x for x in regs_from(regs, "101") if x["cseq"] > last_ok["cseq"]],
                14, "the refresh REGISTER")[0]
            gap = refresh["t"] - last_ok["t"]
            check(9.0 <= gap <= 11.5, "refresh %.2f s after the success; expected ~10 s" % gap)
            check_eq(refresh["ci"], last_ok["ci"], "Call-ID of the refresh")
            check(refresh["cseq"] > last_ok["cseq"], "CSeq of the refresh")
            r = wait_state(sw, "short", "active", 3,
                           extra=lambda r: r["cseq"] >= refresh["cseq"])
            check_eq(r["expires"], 20, "expires after the refresh")
            check_eq(r["failures"], 0, "failures after the refresh")


def test_auth_username():
    with Kamailio() as k:
        pol = policy(k, registration("acct", k.port, username="100", auth_username="acct100",
                                     password="acct100-secret"))
        with Switch(pol) as sw:
            wait_state(sw, "acct", "active", 5)
            regs = k.registers()
            authed = [x for x in regs if x["auth"] != "<null>"]
            check(authed, "no REGISTER with credentials: %r" % regs)
            for x in regs:
                check(x["from_"].startswith("sip:100@"), "From user: %r" % x["from_"])
            check_eq(authed[-1]["auth"], "acct100", "digest user name")
            check(not k.authfails(), "registrar refused credentials: %r" % k.authfails())


def test_sha256():
    with Kamailio(algorithm="SHA-256") as k:
        with Switch(policy(k, registration("sha", k.port, username="102"))) as sw:
            r = wait_state(sw, "sha", ("active", "failed"), 5)
            check_eq(r["state"], "active", "state with SHA-256 (%r)" % r["last_error"])
            check(not k.authfails(), "registrar refused credentials: %r" % k.authfails())
            # The credentials really are SHA-256 ones: trace a refresh.
            sw.ctl("return registrations.sha:trace(true)")
            sw.ctl("return registrations.sha:refresh()")
            wait_state(sw, "sha", "active", 3, extra=lambda x: x["cseq"] > r["cseq"])
            check(sw.wait_log("algorithm=SHA-256", 3),
                  "no algorithm=SHA-256 in the traced REGISTER\n%s" % sw.log_tail())


def test_423_min_expires():
    with Kamailio(min_expires=60) as k:
        with Switch(policy(k, registration("short", k.port, username="103", expires=30))) as sw:
            r = wait_state(sw, "short", ("active", "failed"), 5)
            check_eq(r["state"], "active", "state after 423 (%r)" % r["last_error"])
            check_eq(r["expires"], 60, "expires after 423")
            regs = k.registers()
            asked = [x["expires"] for x in regs]
            check(asked and asked[0] == 30, "first REGISTER should ask 30: %r" % asked)
            i60 = asked.index(60) if 60 in asked else None
            check(i60 is not None, "no REGISTER with Expires 60 after the 423: %r" % asked)
            check(all(e == 30 for e in asked[:i60]) and all(e == 60 for e in asked[i60:]),
                  "Expires sequence %r" % asked)
            gap = regs[i60]["t"] - regs[i60 - 1]["t"]
            check(gap < 1.0, "re-registered %.2f s after the 423, not at once" % gap)
            check_eq(len({x["ci"] for x in regs}), 1, "one Call-ID")


def test_privacy_header():
    with Kamailio() as k:
        entries = (registration("p-id", k.port, username="110", privacy="id")
                   + registration("p-none", k.port, username="111", privacy="none")
                   + registration("p-ignore", k.port, username="112", privacy="ignore")
                   + registration("p-unset", k.port, username="113"))
        with Switch(policy(k, entries, user_agent_privacy="id")) as sw:
            for name in ("p-id", "p-none", "p-ignore", "p-unset"):
                wait_state(sw, name, "active", 5)
            regs = k.registers()
            for user, want in (("110", "id"), ("111", "none"), ("112", "<null>"),
                               ("113", "id")):
                seen = {x["privacy"] for x in regs_from(regs, user)}
                check_eq(seen, {want}, "Privacy of user %s" % user)
    # And the switch's own default, "ignore": no header.
    with Kamailio() as k:
        with Switch(policy(k, registration("p-default", k.port, username="114"))) as sw:
            wait_state(sw, "p-default", "active", 5)
            seen = {x["privacy"] for x in regs_from(k.registers(), "114")}
            check_eq(seen, {"<null>"}, "Privacy with the default user_agent_privacy")


def test_many_entries_start_spread():
    users = ["%d" % (200 + i) for i in range(10)]
    with Kamailio() as k:
        entries = "".join(registration("e%s" % u, k.port, username=u) for u in users)
        with Switch(policy(k, entries)) as sw:
            t0 = time.monotonic()

            def all_active():
                rc, out, err = sw.ctl(
                    "local n = 0 for _, r in ipairs(registrations()) do "
                    "if r.state == 'active' then n = n + 1 end end return n")
                return rc == 0 and out.strip() == "10"

            check(wait_until(all_active, 3), "not all 10 entries active within 3 s:\n%s"
                  % sw.ctl("return tostring(registrations)")[1])
            check(time.monotonic() - t0 < 3, "slow")
            regs = k.registers()
            for u in users:
                check(regs_from(regs, u), "no REGISTER from %s" % u)
            check_eq(len({x["ci"] for x in regs}), 10, "distinct Call-IDs")
            # Spread: the first REGISTERs (CSeq 1) do not all leave in the
            # same millisecond (the switch logs nta's sends with ms stamps).
            stamps = [line.split()[0] for line in sw.log().splitlines()
                      if "sent REGISTER (1) to" in line]
            check_eq(len(stamps), 10, "first REGISTERs in the switch log")
            check(len(set(stamps)) > 1, "all 10 first REGISTERs at %s" % stamps[0])


def test_operator_methods():
    with Kamailio() as k:
        pol = policy(k, registration("op", k.port, username="120")
                     + registration_gateway("op-gw", "op", "127.0.0.1:%d" % k.port))
        with Switch(pol) as sw:
            r = wait_state(sw, "op", "active", 5)
            cseq = r["cseq"]

            # :refresh() registers now.
            check_eq(sw.ctl("return registrations.op:refresh()")[0], 0, "refresh()")
            k.wait_for(lambda regs: [x for x in regs if x["cseq"] > cseq and
                                     (x["expires"] or 0) > 0], 2, "REGISTER after :refresh()")
            r = wait_state(sw, "op", "active", 3, extra=lambda r: r["cseq"] > cseq)

            # :trace(true) logs the whole exchange.
            rc, out, err = sw.ctl("return registrations.op:trace(true)")
            check_eq((rc, out.strip()), (0, "true"), "trace(true) (%s)" % err)
            cseq = r["cseq"]
            sw.ctl("return registrations.op:refresh()")
            wait_state(sw, "op", "active", 3, extra=lambda r: r["cseq"] > cseq)
            check(sw.wait_log("REGISTER sip:127.0.0.1:%d" % k.port, 3),
                  "no traced REGISTER in the log\n%s" % sw.log_tail())
            check(sw.wait_log("SIP/2.0 200", 3), "no traced 200 in the log\n%s" % sw.log_tail())
            log = sw.log()
            check("trace" in log, "no 'trace' in the log")
            check("120-secret" not in log, "the password is in the trace")
            sw.ctl("return registrations.op:trace(false)")

            # :disable() unregisters.
            n = len(k.registers())
            check_eq(sw.ctl("return registrations.op:disable()")[0], 0, "disable()")
            k.wait_for(lambda regs: [x for x in regs[n:] if x["expires"] == 0], 3,
                       "REGISTER with Expires 0 after :disable()")
            r = wait_state(sw, "op", "disabled", 3)
            check(not gateway_online(sw, "op-gw"), "gateway online while disabled")
            time.sleep(0.5)
            check(all(x["expires"] == 0 for x in k.registers()[n:]),
                  "disabled entry registered again: %r" % k.registers()[n:])

            # :enable() registers again.
            n = len(k.registers())
            check_eq(sw.ctl("return registrations.op:enable()")[0], 0, "enable()")
            r = wait_state(sw, "op", "active", 5)
            check(any((x["expires"] or 0) > 0 for x in k.registers()[n:]),
                  "no REGISTER after :enable()")
            check(gateway_online(sw, "op-gw"), "gateway offline after enable")


def test_dynamic_mode_learns_public_address():
    with Sipp("reg_nat_uas.xml") as sipp:
        pol = {"00-switch.lua": switch_policy(),
               "10-carriers.lua": registration("nat", sipp.port, username="user",
                                               mode="dynamic")}
        with Switch(pol) as sw:
            rc = sipp.wait(15)
            check_eq(rc, 0, "sipp exit code (scenario reg_nat_uas.xml)\n%s" % sipp.report())
            r = wait_state(sw, "nat", ("active", "failed", "timeout"), 3)
            check_eq(r["state"], "active", "state (%r)" % r["last_error"])
            check_eq(r["public_address"], "203.0.113.5:40000", "public_address")
            check_eq(r["contact"], "sip:user@203.0.113.5:40000", "contact")
            check_eq(r["expires"], 60, "expires")


if __name__ == "__main__":
    run_tests(globals())
