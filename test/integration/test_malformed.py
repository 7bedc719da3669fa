"""Malformed SIP over UDP and TCP: the switch answers or drops each message,
and keeps serving. The messages are test/corpus/*.sip plus a few too large
for a file, built here.

Nothing requires a particular status for a malformed message; what must hold
is that the process stays alive and answers a valid OPTIONS with 200 over
both transports after every few messages and at the end. A table of the
replies is printed."""

import os
import random
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SOURCE_DIR, Switch, check, check_eq, run_tests,  # noqa: E402
                     status_of, tcp_read_reply)

CORPUS = os.path.join(SOURCE_DIR, "test", "corpus")
REPLY_WAIT = 0.5       # seconds to wait for an answer to a malformed message
HEALTH_EVERY = 5       # messages between health checks
UDP_MAX = 65507        # the largest IPv4 UDP payload

VALID_HEADERS = (b"Via: SIP/2.0/$TRANSPORT 127.0.0.1:$LPORT;branch=z9hG4bK$BRANCH;rport\r\n"
                 b"Max-Forwards: 70\r\n"
                 b"From: <sip:probe@127.0.0.1>;tag=$TAG\r\n"
                 b"To: <sip:switch@127.0.0.1>\r\n"
                 b"Call-ID: $CALLID@127.0.0.1\r\n"
                 b"CSeq: 1 OPTIONS\r\n")
RURI = b"OPTIONS sip:127.0.0.1:$PORT SIP/2.0\r\n"


def generated():
    """Messages too large or too random for a corpus file."""
    rnd = random.Random(20240601)
    out = []
    out.append(("g1-header-line-100k", RURI + VALID_HEADERS + b"X-Long: " + b"a" * 100000 +
                b"\r\nContent-Length: 0\r\n\r\n"))
    body = b"b" * 70000
    out.append(("g2-body-70k", RURI + VALID_HEADERS + b"Content-Type: text/plain\r\n" +
                b"Content-Length: %d\r\n\r\n" % len(body) + body))
    vias = b"".join(b"Via: SIP/2.0/UDP 10.%d.%d.1:5060;branch=z9hG4bK%d\r\n"
                    % (i // 256, i % 256, i) for i in range(2000))
    out.append(("g3-2000-via-headers", RURI + VALID_HEADERS + vias + b"Content-Length: 0\r\n\r\n"))
    many = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(5000))
    out.append(("g4-5000-headers", RURI + VALID_HEADERS + many + b"Content-Length: 0\r\n\r\n"))
    out.append(("g5-uri-60k", b"OPTIONS sip:" + b"u" * 60000 + b"@127.0.0.1:$PORT SIP/2.0\r\n" +
                VALID_HEADERS + b"Content-Length: 0\r\n\r\n"))
    out.append(("g6-random-binary", bytes(rnd.getrandbits(8) for _ in range(1400))))
    out.append(("g7-random-after-start-line",
                RURI + bytes(rnd.getrandbits(8) for _ in range(1400))))
    out.append(("g8-random-printable",
                bytes(rnd.choice(b"ABCDEFGHIJ:;<>@ \r\n\t=,sip/2.0") for _ in range(3000))))
    out.append(("g9-nul-kilobyte", b"\x00" * 1024))
    return out


def corpus():
    names = sorted(n for n in os.listdir(CORPUS) if n.endswith(".sip"))
    check(len(names) >= 25, "test/corpus holds only %d messages" % len(names))
    out = []
    for n in names:
        with open(os.path.join(CORPUS, n), "rb") as f:
            out.append((n[:-4], f.read()))
    return out + generated()


def materialize(template, transport, port, lport):
    msg = template
    for key, value in ((b"$TRANSPORT", transport.upper().encode()),
                       (b"$LPORT", str(lport).encode()),
                       (b"$PORT", str(port).encode())):
        msg = msg.replace(key, value)
    for key in (b"$BRANCH", b"$TAG", b"$CALLID"):
        while key in msg:
            msg = msg.replace(key, uuid.uuid4().hex[:16].encode(), 1)
    return msg


def describe(st, note=""):
    return (str(st) if st is not None else "-") + (" " + note if note else "")


def send_udp(port, template):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        msg = materialize(template, "udp", port, s.getsockname()[1])
        note = ""
        if len(msg) > UDP_MAX:
            msg = msg[:UDP_MAX]
            note = "(clipped)"
        try:
            s.sendto(msg, ("127.0.0.1", port))
        except OSError as e:
            return "send failed: %s" % e.strerror
        first = None
        deadline = time.monotonic() + REPLY_WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(65535)
            except (socket.timeout, ConnectionRefusedError):
                break
            st = status_of(data)
            if st is None:
                return describe(None, "(non-SIP reply)")
            if st >= 200:
                return describe(st, note)
            first = first or st
        return describe(first, note)
    finally:
        s.close()


def send_tcp(port, template):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError as e:
        return "connect failed: %s" % e.strerror
    try:
        msg = materialize(template, "tcp", port, s.getsockname()[1])
        note = ""
        try:
            s.sendall(msg)
        except OSError as e:
            note = "(send: %s)" % (e.strerror or e.__class__.__name__)
        buf = bytearray()
        first = None
        deadline = time.monotonic() + REPLY_WAIT
        while True:
            reply = tcp_read_reply(s, max(0.0, deadline - time.monotonic()), want_final=False,
                                   buf=buf)
            if reply is None:
                break
            st = status_of(reply)
            if st is not None and st >= 200:
                return describe(st, note)
            first = first or st
        # Closed, or still open and silent?
        try:
            s.settimeout(0.05)
            closed = s.recv(1, socket.MSG_PEEK) == b""
        except socket.timeout:
            closed = False
        except OSError:
            closed = True
        return describe(first, " ".join(x for x in (note, "(closed)" if closed else "") if x))
    finally:
        s.close()


def healthy(sw, where):
    check(sw.alive(), "the switch died %s (exit %s)\n%s"
          % (where, sw.proc.returncode, sw.log_tail()))
    for transport in ("udp", "tcp"):
        st = sw.options(transport, timeout=2.0)
        check_eq(st, 200, "valid OPTIONS over %s %s" % (transport, where))


def test_malformed_each_on_its_own():
    messages = corpus()
    rows = []
    with Switch(log_level="info") as sw:
        for i, (name, template) in enumerate(messages, 1):
            result = {}

            def run(kind, fn):
                result[kind] = fn(sw.port, template)

            threads = [threading.Thread(target=run, args=("udp", send_udp)),
                       threading.Thread(target=run, args=("tcp", send_tcp))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rows.append((name, len(template), result["udp"], result["tcp"]))
            if name == "00-valid-options":
                check(result["udp"].startswith("200") and result["tcp"].startswith("200"),
                      "the control message got %s / %s" % (result["udp"], result["tcp"]))
            if i % HEALTH_EVERY == 0:
                healthy(sw, "after message %d (%s)" % (i, name))
        print("  %-42s %7s  %-22s %s" % ("message", "bytes", "UDP reply", "TCP reply"))
        for name, size, u, t in rows:
            print("  %-42s %7d  %-22s %s" % (name, size, u, t))
        healthy(sw, "at the end")
        check_eq(sw.stop(), 0, "exit status of SIGTERM after the corpus")


def test_malformed_one_tcp_connection():
    messages = corpus()
    with Switch(log_level="info") as sw:
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=2)
        sent, stopped = 0, None
        replies = []
        try:
            lport = s.getsockname()[1]
            for name, template in messages:
                try:
                    s.sendall(materialize(template, "tcp", sw.port, lport))
                    sent += 1
                except OSError as e:
                    stopped = "%s (%s)" % (name, e.strerror or e.__class__.__name__)
                    break
            buf = bytearray()
            while True:
                reply = tcp_read_reply(s, 1.5, want_final=False, buf=buf)
                if reply is None:
                    break
                replies.append(status_of(reply))
        finally:
            s.close()
        print("  one connection: sent %d of %d messages%s; %d replies: %s"
              % (sent, len(messages), ", the switch stopped reading at " + stopped
                 if stopped else "", len(replies), " ".join(str(r) for r in replies)))
        healthy(sw, "after the corpus down one TCP connection")
        check_eq(sw.stop(), 0, "exit status of SIGTERM after the corpus")


def test_many_connections_at_once():
    # A burst of connections each left with half a request: the switch
    # still serves others, and closing them all leaves it healthy.
    with Switch(log_level="info") as sw:
        conns = []
        try:
            for _ in range(200):
                c = socket.create_connection(("127.0.0.1", sw.port), timeout=2)
                c.sendall(RURI.replace(b"$PORT", str(sw.port).encode()) + b"Via: SIP/2.0/TCP")
                conns.append(c)
            healthy(sw, "with 200 half-open connections")
        finally:
            for c in conns:
                c.close()
        time.sleep(0.2)
        healthy(sw, "after closing 200 connections")


if __name__ == "__main__":
    run_tests(globals())
