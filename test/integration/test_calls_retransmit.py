"""Retransmissions that arrive after the transactions they belong to have
ended (RFC 3261 17), with T1 = 200 ms: 64*T1 is 12.8 s; the switch keeps the
caller's INVITE T4 = 2 s after its ACK (timer I). The switch
keeps no transaction for them but a small record of what it answered:

- the caller's INVITE sent again after its ACK and after timer I (T4) is
  absorbed: no second call, no INVITE at the carrier, no answer;
- the carrier's 200 sent again gets the same ACK (same Via, CSeq, To), while
  the call is up and after it has ended;
- the caller's BYE sent again gets the same 200, not 481, even after the
  call has gone, and the carrier gets no second BYE;
- a late ACK and a late CANCEL are absorbed.

The caller and the carrier are raw UDP sockets here: every message is
written by the test, so each retransmission is byte for byte the first.
"""

import re
import socket
import time

from harness import Switch, check, check_eq, run_tests
from calls_peers import calls_count, mapping, routing, switch_policy, wait_cdrs

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\n")


def header(msg, name):
    m = re.search(r"^%s:\s*(.*?)\s*$" % re.escape(name), msg, re.M | re.I)
    return m.group(1) if m else None


class Peer:
    """One UDP socket on 127.0.0.1 that sends text and reads messages."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got = []

    def send(self, text, port):
        self.sock.sendto(text.encode(), ("127.0.0.1", port))

    def recv(self, timeout=2.0, want=None):
        """The next message (starting with `want` if given), or None."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                break
            msg = data.decode(errors="replace")
            self.got.append(msg)
            self.last_addr = addr
            if want is None or msg.startswith(want):
                return msg
        return None

    def quiet(self, seconds, want=None):
        """Messages (starting with `want`) received during `seconds`."""
        seen = []
        deadline = time.time() + seconds
        while time.time() < deadline:
            m = self.recv(deadline - time.time())
            if m and (want is None or m.startswith(want)):
                seen.append(m)
        return seen

    def close(self):
        self.sock.close()


def reply(req, status, to_tag=None, body=None, contact=None):
    """A response to request text `req`, its Via, From, To, Call-ID, CSeq."""
    to = header(req, "To")
    if to_tag and ";tag=" not in to:
        to += ";tag=" + to_tag
    lines = ["SIP/2.0 %s" % status]
    for v in re.findall(r"^Via:\s*(.*?)\s*$", req, re.M | re.I):
        lines.append("Via: " + v)
    lines += ["From: " + header(req, "From"), "To: " + to,
              "Call-ID: " + header(req, "Call-ID"), "CSeq: " + header(req, "CSeq")]
    if contact:
        lines.append("Contact: " + contact)
    if body:
        lines += ["Content-Type: application/sdp", "Content-Length: %d" % len(body), "", body]
    else:
        lines += ["Content-Length: 0", ""]
    return "\r\n".join(lines) + ("" if body else "\r\n")


def request(method, sw_port, peer, cseq, branch, to_tag=None, body=None):
    to = "<sip:1555@127.0.0.1:%d>" % sw_port
    if to_tag:
        to += ";tag=" + to_tag
    lines = ["%s sip:1555@127.0.0.1:%d SIP/2.0" % (method, sw_port),
             "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s" % (peer.port, branch),
             "Max-Forwards: 70", "From: <sip:1001@127.0.0.1>;tag=caller1", "To: " + to,
             "Call-ID: retransmit-test@127.0.0.1", "CSeq: %d %s" % (cseq, method),
             "Contact: <sip:1001@127.0.0.1:%d>" % peer.port]
    if body:
        lines += ["Content-Type: application/sdp", "Content-Length: %d" % len(body), "", body]
        return "\r\n".join(lines)
    return "\r\n".join(lines + ["Content-Length: 0", "", ""])


def test_retransmissions_after_the_transactions():
    caller, carrier = Peer(), Peer()
    pol = switch_policy(resend_interval=200) + mapping() + routing("carrier", carrier.port)
    try:
        with Switch({"10-calls.lua": pol}) as sw:
            # The call: INVITE, 180 and 200 from the carrier, ACK both ways.
            invite = request("INVITE", sw.port, caller, 1, "z9hG4bKinv1", body=SDP)
            caller.send(invite, sw.port)
            b_inv = carrier.recv(5, want="INVITE ")
            check(b_inv is not None, "the carrier got the INVITE\n%s" % sw.log_tail(20))
            b_port = carrier.last_addr[1]
            carrier.send(reply(b_inv, "180 Ringing", to_tag="carrier1"), b_port)
            ok = reply(b_inv, "200 OK", to_tag="carrier1", body=SDP,
                       contact="<sip:1555@127.0.0.1:%d>" % carrier.port)
            carrier.send(ok, b_port)
            t_ok = time.time()
            ack1 = carrier.recv(3, want="ACK ")
            check(ack1 is not None, "the carrier got its ACK")
            a_ok = caller.recv(3, want="SIP/2.0 200")
            check(a_ok is not None, "the caller got the 200")
            a_tag = re.search(r";tag=([^;>\s]+)", header(a_ok, "To")).group(1)
            ack = request("ACK", sw.port, caller, 1, "z9hG4bKack1", to_tag=a_tag)
            caller.send(ack, sw.port)

            # Past timer I (2 s): nta holds neither INVITE any more.
            time.sleep(5.5)

            # The caller's INVITE again: absorbed.
            caller.send(invite, sw.port)
            check_eq(caller.quiet(1.0), [], "answers to the INVITE sent again after its ACK")
            check_eq(carrier.quiet(0.2, want="INVITE "), [], "INVITEs at the carrier")
            check_eq(calls_count(sw), 1, "calls")

            # The carrier's 200 again: the same ACK.
            carrier.send(ok, b_port)
            ack2 = carrier.recv(2, want="ACK ")
            check(ack2 is not None, "the 200 sent again was ACKed")
            for name in ("Via", "CSeq", "Call-ID", "To", "From"):
                check_eq(header(ack2, name), header(ack1, name), "the second ACK's %s" % name)

            # A late ACK and a late CANCEL: nothing happens.
            caller.send(ack, sw.port)
            cancel = request("CANCEL", sw.port, caller, 1, "z9hG4bKinv1")
            caller.send(cancel, sw.port)
            late = caller.quiet(1.0)
            check(all(not m.startswith("SIP/2.0 2") for m in late),
                  "a late CANCEL got no 2xx: %r" % late)
            check_eq(calls_count(sw), 1, "calls after a late ACK and CANCEL")

            # The caller hangs up; its BYE again gets the same 200.
            bye = request("BYE", sw.port, caller, 2, "z9hG4bKbye1", to_tag=a_tag)
            caller.send(bye, sw.port)
            bye_ok = caller.recv(3, want="SIP/2.0")
            check(bye_ok is not None and bye_ok.startswith("SIP/2.0 200"),
                  "the BYE's answer: %r" % bye_ok)
            b_bye = carrier.recv(3, want="BYE ")
            check(b_bye is not None, "the carrier got a BYE")
            carrier.send(reply(b_bye, "200 OK"), carrier.last_addr[1])
            wait_cdrs(sw, 1)
            check_eq(calls_count(sw), 0, "calls after the BYE")
            # The carrier's 200 to the INVITE again, the call over: the same
            # ACK (a UAS sends it again for 64*T1 at most).
            carrier.send(ok, b_port)
            ack3 = carrier.recv(2, want="ACK ")
            check(time.time() - t_ok < 12.8, "the test kept within 64*T1 of the 200")
            check(ack3 is not None, "the 200 sent again after the call was ACKed")
            check_eq(header(ack3, "Via"), header(ack1, "Via"), "the third ACK's Via")
            time.sleep(1.0)
            caller.send(bye, sw.port)
            again = caller.recv(2, want="SIP/2.0")
            check(again is not None and again.startswith("SIP/2.0 200"),
                  "the BYE sent again: %r" % again)
            check_eq(header(again, "CSeq"), "2 BYE", "its CSeq")
            check_eq(carrier.quiet(0.5, want="BYE "), [], "BYEs at the carrier after the first")
            check(sw.proc.poll() is None, "the switch is up")
    finally:
        caller.close()
        carrier.close()


if __name__ == "__main__":
    run_tests(globals())
