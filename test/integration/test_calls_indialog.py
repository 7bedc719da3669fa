"""Calls through the B2BUA, in-dialog requests, offers and carrier digest
auth: a re-INVITE from the caller in an answered call relayed to the
carrier (its 200 with the new SDP back, each leg ACKed), INFO both ways,
UPDATE with SDP both ways, a late offer (INVITE without SDP: the carrier's
ACK waits for the caller's answer, and still comes, bare, before the BYE
when the caller never ACKs), an early offer ACKed at once, and a carrier
that challenges our INVITE with 407 answered once with the credentials of
the registration linked to its (registration-type) routing gateway.
"""

import hashlib
import re

from harness import Switch, check, check_eq, run_tests
from calls_peers import (one_carrier, sipp_log, caller, calls_count, carrier, check_cdr, mapping, routing, run,
                         switch_policy, wait_cdrs, wait_done)
from peers import Kamailio, registration, wait_state




def test_reinvite_and_info_relayed():
    with carrier("call_uas_reinvite.xml") as uas, Switch(one_carrier(uas.port)) as sw:
        # The scenarios check the SDP of the re-INVITE and of its 200, both
        # ACKs, and the INFO bodies each way.
        run(caller(sw, "call_uac_reinvite.xml"), sw)
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller", routing_gateway="carrier")
        check_eq(calls_count(sw), 0, "calls after the hangup")


def test_update_relayed_both_ways():
    with carrier("call_uas_update.xml") as uas, Switch(one_carrier(uas.port)) as sw:
        # The scenarios check Allow (UPDATE offered both ways), each UPDATE's
        # SDP and Contact and each 200's SDP.
        run(caller(sw, "call_uac_update.xml"), sw)
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller", routing_gateway="carrier",
                  callee="1555", routed_callee="1555", caller="1001")
        check_eq(calls_count(sw), 0, "calls after the hangup")


def test_late_offer_ack_carries_the_callers_answer():
    with carrier("call_uas_late.xml") as uas, Switch(one_carrier(uas.port)) as sw:
        # The carrier checks that its INVITE had no SDP and that its ACK
        # carries the caller's answer; the caller checks the offer in its 200.
        run(caller(sw, "call_uac_late.xml"), sw)
        wait_done(uas, sw)
        rec = wait_cdrs(sw, 1)
        check_cdr(rec, status=200, hangup="caller", routing_gateway="carrier", caller="1001",
                  callee="1555")
        check(rec["answer"] is not None, "CDR answer time")
        check_eq(calls_count(sw), 0, "calls after the hangup")
        check("late offer: the ACK to carrier waits" in sw.log(), "logged")


def test_late_offer_caller_never_acks():
    # resend_interval 100 ms: nta gives up on the caller's ACK after 6.4 s;
    # the carrier must get a bare ACK, then a BYE.
    with carrier("call_uas_late_noack.xml") as uas, Switch(one_carrier(uas.port)) as sw:
        uac = caller(sw, "call_uac_late_noack.xml")
        uac.start()
        check_eq(uac.wait(20), 0, "the vanished caller got a BYE")
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="switch", routing_gateway="carrier")
        check_eq(calls_count(sw), 0, "calls")
        check("never ACKed" in sw.log(), "logged")


def test_early_offer_acked_at_once():
    # The caller takes 1 s to ACK; the carrier wants its ACK within 0.5 s.
    with carrier("call_uas_quick_ack.xml") as uas, Switch(one_carrier(uas.port)) as sw:
        run(caller(sw, "call_uac_slow_ack.xml"), sw)
        wait_done(uas, sw)
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller", routing_gateway="carrier")
        check("late offer" not in sw.log(), "no late offer logged")


def _md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def test_carrier_407_answered_with_registration_credentials():
    with Kamailio(max_expires=300) as k, carrier("call_uas_auth.xml") as uas:
        pol = switch_policy() + mapping() + registration("reg", k.port, username="100") + \
            'routing_gateway "viareg" { type = "registration", registration = "reg", ' \
            'address = "127.0.0.1:%d", prefixes = { "1" } }\n' % uas.port
        with Switch({"10-calls.lua": pol}) as sw:
            wait_state(sw, "reg", "active", 5)
            run(caller(sw), sw)
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller", routing_gateway="viareg")
            check_eq(calls_count(sw), 0, "calls after the hangup")

        # Exactly two INVITEs reached the carrier; the second carries a
        # digest computed with 100 / 100-secret over its Request-URI.
        # (nta puts the same credentials in the ACK of the 2xx, RFC 3261
        # 13.2.2.4; only the INVITEs are looked at here.)
        text = sipp_log(uas)
        invites = [m for m in re.split(r"^(?=[A-Z]+ \S+ SIP/2.0\r?$|SIP/2.0 )", text, flags=re.M)
                   if m.startswith("INVITE ")]
        check_eq(len(invites), 2, "INVITEs at the carrier")
        auth_re = re.compile(r"^Proxy-Authorization:\s*(.*?)\r?$", re.M | re.I)
        check(not auth_re.search(invites[0]), "the first INVITE has Proxy-Authorization")
        pa = auth_re.findall(invites[1])
        check_eq(len(pa), 1, "Proxy-Authorization headers of the second INVITE: %r" % pa)
        uri = invites[1].split(" ", 2)[1]
        params = dict((m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3))
                      for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', pa[0]))
        check_eq(params.get("username"), "100", "digest username")
        check_eq(params.get("realm"), "carrier.example", "digest realm")
        check_eq(params.get("nonce"), "moonnonce0123456789", "digest nonce")
        check_eq(params.get("uri"), uri, "digest uri")
        ha1 = _md5("100:carrier.example:100-secret")
        ha2 = _md5("INVITE:%s" % params.get("uri"))
        check_eq(params.get("response"), _md5("%s:moonnonce0123456789:%s" % (ha1, ha2)),
                 "digest response")
        check("100-secret" not in text, "the password went on the wire")


if __name__ == "__main__":
    run_tests(globals())
