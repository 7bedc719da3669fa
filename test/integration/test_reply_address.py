"""reply_address: where the switch sends its responses to a routing
gateway's requests. The carrier here is a small UDP UAS in Python with two
sockets: it sends from `sock` and writes another port (`via`) in its Via, so
the test sees which of the two the response reaches.

  socket    (default) the source IP:port, whatever the Via says
  via_port  the source IP with the Via port
  via       the Via host and port (the host is the source IP here)

Checked for an out-of-dialog OPTIONS from the carrier and for its BYE in a
call (an nta dialog transaction), and a gateway without the setting is not
affected by one that has it.
"""
import re
import socket
import uuid

from harness import Switch, check, check_eq, fail, run_tests
from calls_peers import caller, check_cdr, mapping, routing, switch_policy, wait_cdrs

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
       "t=0 0\r\nm=audio 9 RTP/AVP 0\r\n")


class Carrier:
    """Two UDP sockets on 127.0.0.1: `sock` sends and receives requests,
    `via` only shows up in the Via of what we send."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.via = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.via.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.via_port = self.via.getsockname()[1]

    def close(self):
        self.sock.close()
        self.via.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def recv_request(self, method, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            data, addr = self.sock.recvfrom(65535)
            text = data.decode(errors="replace")
            if text.startswith(method + " "):
                return text, addr

    def reply_at(self, timeout=2.0):
        """Which socket a response reaches: "sock", "via" or None."""
        import select
        ready, _, _ = select.select([self.sock, self.via], [], [], timeout)
        for s in ready:
            data = s.recv(65535).decode(errors="replace")
            if data.startswith("SIP/2.0 "):
                return ("sock" if s is self.sock else "via"), data
        return None, None

    def via_header(self):
        return "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s" % (self.via_port,
                                                                  uuid.uuid4().hex[:16])


def header(text, name):
    m = re.search(r"^%s:\s*(.*?)\r$" % name, text, re.M | re.I)
    return m.group(1) if m else None


def options_from(carrier, sw):
    msg = ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n%s\r\n"
           "From: <sip:carrier@127.0.0.1>;tag=o1\r\nTo: <sip:127.0.0.1:%d>\r\n"
           "Call-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
           % (sw.port, carrier.via_header(), sw.port, uuid.uuid4().hex))
    carrier.sock.sendto(msg.encode(), ("127.0.0.1", sw.port))
    return carrier.reply_at()


def call_and_bye(carrier, sw):
    """A caller's call answered by the carrier, which then hangs up; returns
    where the switch's 200 to the BYE went."""
    uac = caller(sw, "call_uac_wait_bye.xml")
    uac.start()
    invite, addr = carrier.recv_request("INVITE")
    totag = "c" + uuid.uuid4().hex[:8]
    vias = "\r\n".join("Via: " + v for v in re.findall(r"^Via:\s*(.*?)\r$", invite, re.M))
    ok = ("SIP/2.0 200 OK\r\n%s\r\nFrom: %s\r\nTo: %s;tag=%s\r\nCall-ID: %s\r\nCSeq: %s\r\n"
          "Contact: <sip:carrier@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\n"
          "Content-Length: %d\r\n\r\n%s"
          % (vias, header(invite, "From"), header(invite, "To"), totag,
             header(invite, "Call-ID"), header(invite, "CSeq"), carrier.port, len(SDP), SDP))
    carrier.sock.sendto(ok.encode(), addr)
    carrier.recv_request("ACK")
    contact = re.search(r"<([^>]+)>", header(invite, "Contact")).group(1)
    bye = ("BYE %s SIP/2.0\r\n%s\r\nFrom: %s;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\n"
           "CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
           % (contact, carrier.via_header(), header(invite, "To"), totag,
              header(invite, "From"), header(invite, "Call-ID")))
    carrier.sock.sendto(bye.encode(), addr)
    where, resp = carrier.reply_at(3.0)
    check_eq(uac.wait(20), 0, "the caller got the BYE")
    return where, resp


def policy(carrier, **fields):
    return {"10-calls.lua": switch_policy() + mapping() + routing("c", carrier.port, **fields)}


def replies_reach(where, **fields):
    """An OPTIONS from the carrier and the BYE ending its call are both
    answered at `where` ("sock" or "via")."""
    with Carrier() as c, Switch(policy(c, **fields)) as sw:
        got, _ = options_from(c, sw)
        check_eq(got, where, "OPTIONS response at")
        got, resp = call_and_bye(c, sw)
        check_eq(got, where, "BYE response at")
        check(resp.startswith("SIP/2.0 200"), "BYE answered 200: %r" % resp[:40])
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="callee")


def test_socket_is_the_default():
    replies_reach("sock")


def test_via_port_answers_at_the_via_port():
    replies_reach("via", reply_address="via_port")


def test_via_and_other_peers():
    """reply_address "via" for the carrier; a peer at another address
    (127.0.0.2, when this machine can bind it) still gets its answer on its
    socket although its Via names port 9."""
    with Carrier() as c, Switch(policy(c, reply_address="via")) as sw:
        where, _ = options_from(c, sw)
        check_eq(where, "via", "OPTIONS response at")
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            other.bind(("127.0.0.2", 0))
        except OSError:
            other.close()
            return
        with other:
            other.settimeout(2)
            msg = ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"
                   "Via: SIP/2.0/UDP 127.0.0.2:9;branch=z9hG4bK%s\r\n"
                   "From: <sip:x@127.0.0.2>;tag=x\r\nTo: <sip:127.0.0.1>\r\nCall-ID: %s\r\n"
                   "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                   % (sw.port, uuid.uuid4().hex, uuid.uuid4().hex))
            other.sendto(msg.encode(), ("127.0.0.1", sw.port))
            try:
                data = other.recv(65535).decode()
            except socket.timeout:
                fail("a peer without reply_address must be answered on its socket")
            check(data.startswith("SIP/2.0 200"), "OPTIONS answered: %r" % data[:40])


if __name__ == "__main__":
    run_tests(globals())
