"""INVITEs refused before any call are answered without a transaction (the
calls module's INVITE prefilter): an unknown source's 403, Max-Forwards 0's
483, a Session-Expires below Min-SE's 422, and an endpoint's 407 challenge
leave no nta transaction and no per-request heap behind.

A retransmitted refused INVITE (same branch) gets the same answer again, To
tag included (from the answer cache); its ACK is absorbed. A retransmitted
challenge is challenged again with a fresh nonce (as a REGISTER is), and the
INVITE with credentials becomes a call.

The floods, with the per-source limit off (security.source_rate = 0), from
127.0.0.2, which is no gateway: 50,000 INVITEs each answered 403 (no
accounts), and 10,000 each challenged 407 (with accounts, while a phone on
127.0.0.3 registers); OPTIONS are answered meanwhile; nta holds no
transaction for them and the heap grows by less than 16 MiB. (Under ASan
stats().heap_in_use reads 0: malloc is ASan's; the transaction count is the
check that holds there. A release build checks both: MOONSWITCH=.../build-
release/moonswitch.) MOON_FLOOD_RATE sets the SIPp rate (default 1,000/s: the
ASan build on the shared 2-core machine answers about 2,000/s alone, and
falls behind, losing datagrams past SIPp's retransmissions, when the whole
suite runs beside it; the README's figures are a release build's at
10,000/s)."""

import os
import re
import socket
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, parse_response, run_tests  # noqa: E402
from harness import scratch_dir  # noqa: E402
from peers import Sipp  # noqa: E402
from calls_peers import caller, carrier, routing, scenario, switch_policy  # noqa: E402
from test_flood import answered_retrying, phone_from, udp_from  # noqa: E402
from test_registrar_auth import parse_challenges  # noqa: E402

FLOODER = "127.0.0.2"
PHONE = "127.0.0.3"
COUNT = 50000
RATE = int(os.environ.get("MOON_FLOOD_RATE", "1000"))


def accounts():
    return ('mapping_gateway "phones" { type = "register" }\n'
            'account "1001" { password = "pw1001", mapping_gateway = "phones" }\n')


def policy(extra="", **sip):
    return {"10-calls.lua": switch_policy(**sip).replace(
        "switch {", "switch { security = { source_rate = 0 },", 1) + extra}


def invite(port, src_port, host=FLOODER, user="1555", max_forwards=70, extra=""):
    t = uuid.uuid4().hex[:16]
    return ("INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-%s;rport\r\n"
            "Max-Forwards: %d\r\n"
            "From: <sip:1001@%s>;tag=%s\r\n"
            "To: <sip:%s@127.0.0.1:%d>\r\n"
            "Call-ID: %s@stateless\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:1001@%s:%d>\r\n"
            "%s"
            "Content-Length: 0\r\n\r\n"
            % (user, port, host, src_port, t, max_forwards, host, t, user, port, t, host,
               src_port, extra)).encode()


def ack_for(inv, to_value):
    """The ACK of a non-2xx answer to `inv`: its branch, the answer's To."""
    text = inv.decode()
    head = text.split("\r\n\r\n")[0].split("\r\n")
    keep = [h for h in head[1:] if h.split(":")[0] in ("Via", "From", "Call-ID")]
    ruri = head[0].split()[1]
    return ("ACK %s SIP/2.0\r\n%s\r\nTo: %s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n" % (ruri, "\r\n".join(keep), to_value)).encode()


def exchange(s, port, data, timeout=3.0):
    """Send data; the first final answer: (status, headers), or None."""
    s.sendto(data, ("127.0.0.1", port))
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = parse_response(s.recv(65535))
        except socket.timeout:
            return None
        if got and got[0] >= 200:
            return got[0], got[1]
    return None


def to_tag(hd):
    return hd["to"][0].partition(";tag=")[2].split(";")[0]


def sip_stat(sw, name):
    rc, out, err = sw.ctl("return stats().sip.%s" % name)
    check(rc == 0, "stats().sip.%s: %s" % (name, err))
    return float(out.strip())


def test_refusals_retransmitted_get_the_same_answer():
    extra = 'mapping_gateway "cust" { addresses = { "127.0.0.4" } }\n'
    with Switch(policy(extra, session_min_se=120)) as sw:
        s = udp_from(FLOODER)
        try:
            lport = s.getsockname()[1]
            inv = invite(sw.port, lport)
            st1, hd1 = exchange(s, sw.port, inv)
            st2, hd2 = exchange(s, sw.port, inv)
            check_eq([st1, st2], [403, 403], "an unknown source's INVITE and its retransmission")
            check(to_tag(hd1) != "", "the 403 has a To tag")
            check_eq(to_tag(hd2), to_tag(hd1), "the retransmission's To tag")
            s.sendto(ack_for(inv, hd1["to"][0]), ("127.0.0.1", sw.port))
            check_eq(exchange(s, sw.port, ack_for(inv, hd1["to"][0]), 0.5), None,
                     "an answer to the ACK")
            # A customer's INVITEs refused before a call: Max-Forwards 0,
            # a Session-Expires below Min-SE (with its Min-SE again).
            c = udp_from("127.0.0.4")
            try:
                cport = c.getsockname()[1]
                inv = invite(sw.port, cport, host="127.0.0.4", max_forwards=0)
                check_eq([exchange(c, sw.port, inv)[0] for _ in range(2)], [483, 483],
                         "Max-Forwards 0 and its retransmission")
                inv = invite(sw.port, cport, host="127.0.0.4",
                             extra="Session-Expires: 90\r\nSupported: timer\r\n")
                for what in ("Session-Expires 90", "its retransmission"):
                    st, hd = exchange(c, sw.port, inv)
                    check_eq((st, hd.get("min-se")), (422, ["120"]), what)
            finally:
                c.close()
            check_eq(sip_stat(sw, "server_transactions"), 0, "server transactions")
            check_eq(sip_stat(sw, "answers"), 3, "answers remembered")
        finally:
            s.close()


def test_challenge_is_stateless_and_credentials_call():
    with carrier("call_uas.xml") as uas:
        pol = (switch_policy(endpoint_digest="md5") + accounts() +
               routing("carrier", uas.port))
        with Switch({"10-calls.lua": pol}) as sw:
            s = udp_from("127.0.0.1")
            try:
                inv = invite(sw.port, s.getsockname()[1], host="127.0.0.1")
                st1, hd1 = exchange(s, sw.port, inv)
                st2, hd2 = exchange(s, sw.port, inv)
            finally:
                s.close()
            check_eq([st1, st2], [407, 407], "an endpoint's INVITE and its retransmission")
            n1 = parse_challenges(hd1, "proxy-authenticate")[0]["nonce"]
            n2 = parse_challenges(hd2, "proxy-authenticate")[0]["nonce"]
            check(n1 != n2, "a retransmitted challenge gets a fresh nonce (stateless)")
            check_eq(sip_stat(sw, "server_transactions"), 0, "server transactions")
            # SIPp: INVITE, 407, ACK, INVITE with credentials, a call.
            csv = os.path.join(sw.dir, "auth.csv")
            with open(csv, "w") as f:
                f.write("SEQUENTIAL\n1001;[authentication username=1001 password=pw1001];\n")
            uac = caller(sw, "call_uac_auth.xml", number="1555", extra=["-inf", csv])
            uac.start()
            check_eq(uac.wait(20), 0, "the authenticated call\n" + uac.report())


def screen_counts(sipp):
    """Successful and failed calls from SIPp's last screen (-trace_screen)."""
    text = ""
    for name in os.listdir(sipp.dir):
        if name.endswith("_screen.log"):
            with open(os.path.join(sipp.dir, name), errors="replace") as f:
                text = f.read()
    ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    bad = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    return (int(ok.group(1)) if ok else None, int(bad.group(1)) if bad else None)


def flood(sw, code, count, phone):
    """`count` INVITEs from FLOODER at RATE through SIPp, each to be answered
    `code`, while OPTIONS from PHONE are answered (and, with `phone`, PHONE
    registers as 1001). Checks what the switch held meanwhile."""
    heap = lambda: float(sw.ctl("return stats().heap_in_use")[1])  # noqa: E731
    before = heap()
    uac = Sipp(scenario("invite_refused_uac.xml", code), workdir=scratch_dir("stateless-flood"),
               remote="127.0.0.1:%d" % sw.port, ip=FLOODER,
               extra=["-s", "1555", "-m", str(count), "-r", str(RATE), "-l", str(RATE * 10),
                      "-timeout", "300", "-trace_screen"])
    uac.args.remove("-trace_msg")
    peak_heap, peak_tr, options_ok = before, 0.0, 0
    t0 = time.monotonic()
    with uac:
        if phone:
            ua = phone_from(sw, PHONE)
            with ua:
                check_eq(ua.register(expires=60)[0], 200, "the phone's REGISTER in the flood")
        while uac.wait(0.5) is None:
            if answered_retrying(sw.port, PHONE):
                options_ok += 1
            peak_heap = max(peak_heap, heap())
            peak_tr = max(peak_tr, sip_stat(sw, "server_transactions"))
        took = time.monotonic() - t0
        ok, bad = screen_counts(uac)
        check_eq((uac.proc.returncode, ok, bad), (0, count, 0),
                 "SIPp's exit and its calls answered %d\n%s" % (code, uac.report()))
    peak_heap = max(peak_heap, heap())
    answers = sip_stat(sw, "answer_bytes")
    grown = peak_heap - before
    print("  %d INVITEs (%d/s asked, %.0f/s done) answered %d; heap %+.1f MiB (%.0f B each); "
          "server transactions at most %d; answer cache %.1f MiB; OPTIONS answered %d"
          % (count, RATE, count / took, code, grown / 1048576, grown / count, peak_tr,
             answers / 1048576, options_ok), file=sys.stderr)
    check(options_ok > 0, "no OPTIONS answered during the flood")
    check(peak_tr < 50, "nta held %d server transactions" % peak_tr)
    check(grown < 16 * 1048576, "heap grew by %.1f MiB" % (grown / 1048576))
    check(answers < 16 * 1048576, "the answer cache holds %.1f MiB" % (answers / 1048576))


def test_flood_of_unknown_source_invites_keeps_nothing():
    """No accounts: every INVITE from a source that is no gateway gets 403."""
    with Switch(policy(), log_level="info") as sw:
        flood(sw, 403, COUNT, phone=False)


def test_flood_of_unauthenticated_invites_keeps_nothing():
    """With accounts, an INVITE from a source that is no gateway may be an
    endpoint's: each gets a 407 challenge (a fresh nonce), and a phone
    registers meanwhile."""
    with Switch(policy(accounts()), log_level="info") as sw:
        flood(sw, 407, COUNT // 5, phone=True)


if __name__ == "__main__":
    run_tests(globals())
