"""Identity towards the carrier (VOS3000 "SIP privacy header, display
from"): the B-leg From carries the caller's display name over the number
caller_from chose; the caller's P-Asserted-Identity and Privacy pass to the
carrier; a registration gateway's privacy ("id", "none", "ignore", or the
switch's user_agent_privacy inherited) adds the switch's own. The SIPp
carriers check From, Privacy and P-Asserted-Identity with the regular
expressions each test writes into call_uas_privacy.xml.
"""

import os
import re

from harness import Switch, check_eq, run_tests
from calls_peers import (caller, calls_count, carrier, check_cdr, mapping, routing, run,
                         switch_policy, wait_cdrs, wait_done)
from peers import Kamailio, registration, wait_state

DISPLAY = "Alice Smith"
KEYS = {"display": DISPLAY, "privacy": "header"}  # the caller's PAI user is 4004
SWITCH = r"127\.0\.0\.1:[0-9]+"  # the switch's address in our From and PAI


def expect(from_user, privacy, pai):
    """The carrier's checks: From with the display name over from_user at
    the switch, Privacy and P-Asserted-Identity as given (whole values)."""
    return {"@FROM@": r'^ *"%s" <sip:%s@%s>;tag=' % (DISPLAY, from_user, SWITCH),
            "@PRIVACY@": r"^ *%s *$" % privacy,
            "@PAI@": r"^ *%s *$" % pai}


def invite_headers(sipp):
    """From, Privacy and P-Asserted-Identity lines of the INVITE a SIPp
    carrier received, for the test's output."""
    for name in sorted(os.listdir(sipp.dir)):
        if name.endswith("_messages.log"):
            with open(os.path.join(sipp.dir, name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            m = re.search(r"^INVITE .*?\r?\n\r?\n", text, re.M | re.S)
            if m:
                return [h for h in m.group(0).splitlines()
                        if re.match(r"(From|f|Privacy|P-Asserted-Identity):", h, re.I)]
    return []


def test_display_and_identity_pass_to_a_static_gateway():
    # caller_from = "pai": the number in From is the PAI's, under the
    # caller's display name; the caller's PAI and Privacy pass unchanged.
    want = expect("4004", "header", r"<sip:4004@127\.0\.0\.1>")
    with carrier("call_uas_privacy.xml", subst=want) as uas:
        pol = switch_policy() + mapping(caller_from="pai") + routing("carrier", uas.port)
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw, "call_uac_privacy.xml", keys=KEYS), sw)
            wait_done(uas, sw)
            print("  " + "\n  ".join(invite_headers(uas)))
            check_cdr(wait_cdrs(sw, 1), caller="4004", callee="1555", status=200,
                      hangup="caller", routing_gateway="carrier", mapping_gateway="cust")
            check_eq(calls_count(sw), 0, "calls")


def test_registration_privacy_id_none_ignore():
    # The switch's user_agent_privacy is "id"; "inherit" follows it, the
    # other two registrations set their own. One call through each.
    cases = [  # (registration, its privacy, prefix, what the carrier must see)
        ("inherit", None, "11", expect("1001", "id", r"<sip:1001@%s>" % SWITCH)),
        ("none", "none", "12", expect("1001", "none", r"<sip:4004@127\.0\.0\.1>")),
        ("ignore", "ignore", "13", expect("1001", "header", r"<sip:4004@127\.0\.0\.1>")),
    ]
    with Kamailio(max_expires=300) as k:
        uases = [carrier("call_uas_privacy.xml", subst=want) for _, _, _, want in cases]
        try:
            for u in uases:
                u.start()
            pol = switch_policy(user_agent_privacy="id") + mapping()
            for i, ((name, privacy, prefix, _), uas) in enumerate(zip(cases, uases)):
                pol += registration(name, k.port, username="10%d" % i, privacy=privacy)
                pol += ('routing_gateway "via-%s" { type = "registration", registration = '
                        '"%s", address = "127.0.0.1:%d", prefixes = { "%s" } }\n'
                        % (name, name, uas.port, prefix))
            with Switch({"10-calls.lua": pol}) as sw:
                for name, _, _, _ in cases:
                    wait_state(sw, name, "active", 5)
                for n, ((name, _, prefix, _), uas) in enumerate(zip(cases, uases), 1):
                    run(caller(sw, "call_uac_privacy.xml", number=prefix + "55", keys=KEYS),
                        sw)
                    wait_done(uas, sw)
                    print("  %s:\n    %s" % (name, "\n    ".join(invite_headers(uas))))
                    check_cdr(wait_cdrs(sw, n), caller="1001", callee=prefix + "55",
                              status=200, hangup="caller", routing_gateway="via-" + name)
                check_eq(calls_count(sw), 0, "calls")
        finally:
            for u in uases:
                u.kill()


def test_e164_display_from_chooses_the_display_name():
    # sip.e164_display_from: "caller" puts the caller number over it,
    # "none" leaves the display name out ("ignore", the default, is above).
    for mode, display in (("caller", '"1001" '), ("none", "")):
        want = {"@FROM@": r"^ *%s<sip:1001@%s>;tag=" % (display, SWITCH),
                "@PRIVACY@": r"^ *header *$", "@PAI@": r"^ *<sip:4004@127\.0\.0\.1> *$"}
        with carrier("call_uas_privacy.xml", subst=want) as uas:
            pol = switch_policy(e164_display_from=mode) + mapping() + routing("carrier",
                                                                              uas.port)
            with Switch({"10-calls.lua": pol}) as sw:
                run(caller(sw, "call_uac_privacy.xml", keys=KEYS), sw)
                wait_done(uas, sw)
                print("  %s: %s" % (mode, invite_headers(uas)))
                check_cdr(wait_cdrs(sw, 1), caller="1001", status=200, hangup="caller")


if __name__ == "__main__":
    run_tests(globals())
