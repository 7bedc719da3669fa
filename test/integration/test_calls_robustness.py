"""Calls through the B2BUA when messages are lost, peers move or calls loop
(issue 5).

- A lost ACK to the carrier: the carrier sends its 200 again after our
  ACK, and each copy gets the same ACK again (RFC 3261 13.2.2.4), with
  the caller's answer in a late offer.
- Target refresh (RFC 3261 12.2): a re-INVITE with a new Contact moves
  where later requests on that leg go; the caller's leg follows the
  Contact, the carrier's follows its gateway's request_address.
- Late offer inside the dialog, both ways: the 200 of an offerless
  re-INVITE carries the offer, and our ACK to that side waits for the
  sender's ACK, whose answer it carries.
- Loops: a routing gateway that is the switch itself gets 482 Loop
  Detected at once (one call, one CDR); Max-Forwards, decremented on the
  B-leg, cuts the loops that change the Call-ID (483).
"""

import os
import re
import time

from harness import Switch, check, check_eq, free_port, run_tests, scratch_dir
from calls_peers import (one_carrier, sipp_messages, OptionsPeer, caller, calls_count, carrier, check_cdr, ctl_value,
                         mapping, routing, run, scenario, switch_policy, wait_cdrs, wait_done,
                         wait_until)




def header(msg, name):
    m = re.search(r"^%s:\s*(.*?)\s*$" % re.escape(name), msg, re.M | re.I)
    return m.group(1) if m else None


def answered_cdr(sw, **want):
    rec = wait_cdrs(sw, 1)
    fields = dict(status=200, reason="OK", caller="1001", callee="1555", original_callee="1555",
                  routed_callee="1555", mapping_gateway="cust", routing_gateway="carrier")
    fields.update(want)
    check_cdr(rec, **fields)
    check(rec["answer"] is not None and rec["answer"] >= rec["start"], "CDR answer %r" % rec)
    return rec


# ---- A lost ACK --------------------------------------------------------------


def check_two_same_acks(uas):
    acks = [m for m in sipp_messages(uas) if m.startswith("ACK ")]
    check_eq(len(acks), 2, "ACKs at the carrier")
    for name in ("Via", "CSeq", "Call-ID", "To"):
        check_eq(header(acks[1], name), header(acks[0], name), "the second ACK's %s" % name)
    invite = [m for m in sipp_messages(uas) if m.startswith("INVITE ")][0]
    check_eq(header(acks[0], "CSeq"), header(invite, "CSeq").split()[0] + " ACK",
             "the ACK's CSeq")
    return acks


def test_retransmitted_200_is_acked_again():
    # -nr: SIPp would take the second ACK, identical to the first, for a
    # retransmission of it and not match it to the scenario's second ACK.
    with carrier("call_uas_ack_lost.xml", extra=["-nr"]) as uas, \
            Switch(one_carrier(uas.port)) as sw:
        run(caller(sw, hold_ms=1500), sw)
        wait_done(uas, sw)
        answered_cdr(sw, hangup="caller")
        check_eq(calls_count(sw), 0, "calls after the hangup")
        check_two_same_acks(uas)


def test_late_offer_retransmitted_200_gets_the_answer_again():
    with carrier("call_uas_late_ack_lost.xml", extra=["-nr"]) as uas, \
            Switch(one_carrier(uas.port)) as sw:
        # The carrier checks the caller's answer in both ACKs.
        run(caller(sw, "call_uac_late.xml", hold_ms=1500), sw)
        wait_done(uas, sw)
        answered_cdr(sw, hangup="caller")
        check_eq(calls_count(sw), 0, "calls after the hangup")
        check_two_same_acks(uas)


def byes_at(peer, n=1):
    """The Request-URIs of the BYEs at peer once n came (the switch sends
    the BYE as it answers the other side's: allow it a moment)."""
    wait_until(lambda: peer.count("BYE") >= n, 3, what="%d BYE(s) at port %d" % (n, peer.port))
    return peer.uris("BYE")


# ---- Target refresh -------------------------------------------------------------


def test_caller_moves_with_a_reinvite():
    # The caller re-INVITEs with a Contact at the peer's port and leaves;
    # the carrier hangs up, and the switch's BYE must reach the peer.
    with OptionsPeer(methods=("BYE",)) as moved, carrier("call_uas_reinvite_bye.xml") as uas, \
            Switch(one_carrier(uas.port)) as sw:
        run(caller(sw, "call_uac_moves.xml", extra=["-key", "newport", str(moved.port)]), sw)
        wait_done(uas, sw)
        answered_cdr(sw, hangup="callee")
        check_eq(byes_at(moved), ["sip:1001@127.0.0.1:%d" % moved.port], "BYEs at the new target")
        check_eq(calls_count(sw), 0, "calls after the hangup")


def test_carrier_moves_socket_keeps_the_address():
    # request_address "socket" (the default): the carrier's new Contact
    # gives the user part; the BYE still goes where we reached it.
    with OptionsPeer(methods=("BYE",)) as moved:
        keys = ["-key", "newhost", "127.0.0.1", "-key", "newport", str(moved.port)]
        with carrier("call_uas_moves_bye.xml", extra=keys) as uas, \
                Switch(one_carrier(uas.port)) as sw:
            run(caller(sw, "call_uac_accept_reinvite.xml", hold_ms=300), sw)
            wait_done(uas, sw)
            answered_cdr(sw, hangup="caller")
            byes = [m for m in sipp_messages(uas) if m.startswith("BYE ")]
            check_eq(len(byes), 1, "BYEs at the carrier")
            check_eq(byes[0].split(" ")[1], "sip:moved@127.0.0.1:%d" % uas.port,
                     "the BYE's Request-URI")
            check_eq(moved.count("BYE"), 0, "BYEs at the carrier's new Contact")
            check_eq(calls_count(sw), 0, "calls after the hangup")


def test_carrier_moves_contact_port():
    # request_address "contact_port": the new Contact's port on the host we
    # reached the carrier at (127.0.0.1, not the Contact's 127.0.0.2).
    with OptionsPeer(methods=("BYE",)) as moved:
        keys = ["-key", "newhost", "127.0.0.2", "-key", "newport", str(moved.port)]
        with carrier("call_uas_moves.xml", extra=keys) as uas, \
                Switch(one_carrier(uas.port, request_address="contact_port")) as sw:
            run(caller(sw, "call_uac_accept_reinvite.xml", hold_ms=300), sw)
            wait_done(uas, sw)
            answered_cdr(sw, hangup="caller")
            check_eq(byes_at(moved), ["sip:moved@127.0.0.1:%d" % moved.port],
                     "BYEs at the new target")
            check_eq(calls_count(sw), 0, "calls after the hangup")


# ---- Late offer in a re-INVITE ------------------------------------------------------


def test_reinvite_late_offer_both_ways():
    with carrier("call_uas_reinvite_late.xml") as uas, Switch(one_carrier(uas.port)) as sw:
        # Each side checks that the re-INVITE came without SDP, the offer in
        # the 200 and the answer in the ACK.
        run(caller(sw, "call_uac_reinvite_late.xml"), sw)
        wait_done(uas, sw)
        answered_cdr(sw, hangup="caller")
        check_eq(calls_count(sw), 0, "calls after the hangup")
        check("re-INVITE late offer: ACK waits for the caller's" in sw.log(), "logged")
        check("re-INVITE late offer: ACK waits for the callee's" in sw.log(), "logged")


def reinvite_never_acked(uas_scenario, uac_scenario):
    """resend_interval 100 ms: nta gives up on the caller's ACK after 6.4 s;
    the carrier gets its ACK (held and bare for a late offer, at once
    otherwise), then both sides a BYE."""
    with carrier(uas_scenario) as uas, Switch(one_carrier(uas.port)) as sw:
        uac = caller(sw, uac_scenario)
        uac.start()
        check_eq(uac.wait(20), 0, "the caller got a BYE")
        wait_done(uas, sw)
        answered_cdr(sw, hangup="switch")
        check_eq(calls_count(sw), 0, "calls")
        check("the caller never ACKed our 2xx to its re-INVITE" in sw.log(), "logged")


def test_reinvite_late_offer_never_acked():
    reinvite_never_acked("call_uas_reinvite_late_noack.xml", "call_uac_reinvite_late_noack.xml")


def test_reinvite_never_acked():
    reinvite_never_acked("call_uas_reinvite_noack.xml", "call_uac_reinvite_noack.xml")


# ---- Loops ------------------------------------------------------------------------


def self_loop_policy(port):
    # The only routing gateway is the switch itself, whose mapping gateway
    # takes 127.0.0.1: the B-leg INVITE comes back in as a new call.
    return {"10-calls.lua": switch_policy() + mapping() + routing("self", port)}


def test_loop_to_ourselves_is_482_at_once():
    port = free_port()
    with Switch(self_loop_policy(port), port=port) as sw:
        t0 = time.time()
        run(caller(sw, "call_uac_fail.xml", code=482), sw)
        took = time.time() - t0
        check(took < 2.0, "the loop took %.1f s" % took)
        check_cdr(wait_cdrs(sw, 1), status=482, reason="Loop Detected", hangup="callee",
                  caller="1001", callee="1555", routed_callee="1555", mapping_gateway="cust",
                  routing_gateway="self", answer=None)
        time.sleep(0.3)
        check_eq(len_cdrs(sw), 1, "CDRs: one call, not one per pass")
        check_eq(calls_count(sw), 0, "calls")
        check("482 Loop Detected" in sw.log(), "logged")


def len_cdrs(sw):
    return int(ctl_value(sw, "return cdrs.count()"))


def caller_max_forwards(n):
    """call_uac_fail.xml expecting 483, with Max-Forwards: n."""
    path = scenario("call_uac_fail.xml", code=483)
    with open(path) as f:
        text = f.read()
    check("Max-Forwards: 70" in text, "call_uac_fail.xml sends Max-Forwards: 70")
    out = os.path.join(scratch_dir("scenario"), "call_uac_fail_mf%d.xml" % n)
    with open(out, "w") as f:
        f.write(text.replace("Max-Forwards: 70", "Max-Forwards: %d" % n))
    return out


def test_max_forwards_decremented_483():
    # Max-Forwards 1 from the caller: our B-leg INVITE says 0, and the
    # switch it reaches (itself) refuses it with 483 before the loop check.
    port = free_port()
    with Switch(self_loop_policy(port), port=port) as sw:
        run(caller(sw, caller_max_forwards(1)), sw)
        check_cdr(wait_cdrs(sw, 1), status=483, reason="Too Many Hops", hangup="callee",
                  routing_gateway="self", caller="1001", callee="1555", answer=None)
        time.sleep(0.3)
        check_eq(len_cdrs(sw), 1, "CDRs")
        check_eq(calls_count(sw), 0, "calls")


if __name__ == "__main__":
    run_tests(globals())
