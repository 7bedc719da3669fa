"""Protocol corners: valid requests that once got no answer or a wrong one.

Each is sent as exact bytes over UDP and TCP (the corpus files 44-48 and a
few built here): a Require naming an option tag the switch lacks (420 with
Unsupported), methods with every RFC 3261 token character (501), an escaped
NUL in a quoted display name (answered as usual), a SIP version other than
2.0 (505, over UDP to the source, not to the Via's port), and a Via whose
transport is not the one the request came over (answered on the connection
or to the source it came from)."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Switch, check, check_eq, parse_response, run_tests,  # noqa: E402
                     status_of, tcp_read_reply, udp_read_reply)
from calls_peers import OptionsPeer, mapping, routing, switch_policy  # noqa: E402
from test_malformed import CORPUS, materialize  # noqa: E402


def corpus_file(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def send(sw, transport, template, timeout=2.0):
    """Send `template` (corpus placeholders filled in) over `transport`; the
    final reply (bytes) or None."""
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            s.sendto(materialize(template, "udp", sw.port, s.getsockname()[1]),
                     ("127.0.0.1", sw.port))
            return udp_read_reply(s, timeout, lambda st: st is not None and st >= 200)
        finally:
            s.close()
    s = socket.create_connection(("127.0.0.1", sw.port), timeout=timeout)
    try:
        s.sendall(materialize(template, "tcp", sw.port, s.getsockname()[1]))
        return tcp_read_reply(s, timeout)
    finally:
        s.close()


def answer(sw, transport, template, want, what):
    reply = send(sw, transport, template)
    check(reply is not None, "%s over %s: no answer\n%s" % (what, transport, sw.log_tail()))
    status, headers, _ = parse_response(reply)
    check_eq(status, want, "%s over %s" % (what, transport))
    return headers


OPTIONS = (b"OPTIONS sip:127.0.0.1:$PORT SIP/2.0\r\n"
           b"Via: SIP/2.0/$TRANSPORT 127.0.0.1:$LPORT;branch=z9hG4bK$BRANCH;rport\r\n"
           b"Max-Forwards: 70\r\n"
           b"From: <sip:probe@127.0.0.1>;tag=$TAG\r\n"
           b"To: <sip:switch@127.0.0.1>\r\n"
           b"Call-ID: $CALLID@127.0.0.1\r\n"
           b"CSeq: 1 OPTIONS\r\n")


def test_require_unsupported():
    with Switch() as sw:
        for transport in ("udp", "tcp"):
            headers = answer(sw, transport, corpus_file("44-require-unsupported.sip"), 420,
                             "OPTIONS with Require: foo, bar / baz")
            tags = ", ".join(headers.get("unsupported", [])).replace(" ", "").split(",")
            check_eq(sorted(tags), ["bar", "baz", "foo"], "Unsupported")
            # Supported and Proxy-Require ask nothing of a UAS.
            answer(sw, transport, OPTIONS + b"Supported: foo\r\nProxy-Require: bar\r\n"
                   b"Content-Length: 0\r\n\r\n", 200, "OPTIONS with Supported")
            answer(sw, transport, OPTIONS.replace(b"OPTIONS", b"REGISTER") +
                   b"Require: path\r\nContact: <sip:probe@127.0.0.1>\r\n"
                   b"Content-Length: 0\r\n\r\n", 420, "REGISTER with Require")
        # CANCEL is exempt: it matches nothing here, so 481.
        cancel = OPTIONS.replace(b"OPTIONS", b"CANCEL") + b"Require: foo\r\n" \
            b"Content-Length: 0\r\n\r\n"
        answer(sw, "udp", cancel, 481, "CANCEL with Require")


def test_invite_with_require_is_not_routed():
    carrier = OptionsPeer(code=486, methods=("OPTIONS", "INVITE"))
    with carrier, Switch({"10-calls.lua": switch_policy() + mapping() +
                          routing("carrier", carrier.port)}) as sw:
        invite = (b"INVITE sip:1555@127.0.0.1:$PORT SIP/2.0\r\n"
                  b"Via: SIP/2.0/$TRANSPORT 127.0.0.1:$LPORT;branch=z9hG4bK$BRANCH;rport\r\n"
                  b"Max-Forwards: 70\r\n"
                  b"From: <sip:1001@127.0.0.1>;tag=$TAG\r\n"
                  b"To: <sip:1555@127.0.0.1>\r\n"
                  b"Call-ID: $CALLID@127.0.0.1\r\n"
                  b"CSeq: 1 INVITE\r\n"
                  b"Contact: <sip:1001@127.0.0.1:$LPORT>\r\n")
        for transport in ("udp", "tcp"):
            headers = answer(sw, transport, invite + b"Require: 100rel, foo\r\n"
                             b"Content-Length: 0\r\n\r\n", 420, "INVITE with Require")
            check_eq(", ".join(headers.get("unsupported", [])).replace(" ", ""), "100rel,foo",
                     "Unsupported")
        time.sleep(0.3)
        check_eq(carrier.count("INVITE"), 0, "INVITEs routed to the carrier")
        # The same INVITE without Require is routed (and refused there).
        answer(sw, "udp", invite + b"Content-Length: 0\r\n\r\n", 486, "INVITE")
        check_eq(carrier.count("INVITE"), 1, "INVITEs routed to the carrier")


def test_method_token_characters():
    with Switch() as sw:
        for transport in ("udp", "tcp"):
            for method in (b"FOO+BAR", b"FOO`BAR", b"A'~%*_!.-+`"):
                msg = OPTIONS.replace(b"OPTIONS", method) + b"Content-Length: 0\r\n\r\n"
                headers = answer(sw, transport, msg, 501, method.decode())
                check_eq(headers.get("cseq"), ["1 " + method.decode()], "CSeq of the 501")
                check("allow" in headers, "501 without Allow")
            answer(sw, transport, corpus_file("45-method-token-chars.sip"), 501,
                   "corpus 45")
            headers = answer(sw, transport, corpus_file("48-rfc4475-intmeth.sip"), 501,
                             "RFC 4475 intmeth")
            check_eq(headers.get("cseq"),
                     ["139122385 !interesting-Method0123456789_*+`.%indeed'~"], "CSeq")


def test_escaped_nul_in_display_name():
    with Switch() as sw:
        for transport in ("udp", "tcp"):
            answer(sw, transport, corpus_file("46-quoted-nul-display-name.sip"), 200,
                   "OPTIONS with \\NUL in From's display name")
        # Over TCP in two segments, cut right after the NUL.
        msg = materialize(corpus_file("46-quoted-nul-display-name.sip"), "tcp", sw.port, 9)
        cut = msg.index(b"\\\x00") + 2
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=2)
        try:
            s.sendall(msg[:cut])
            time.sleep(0.2)
            s.sendall(msg[cut:])
            reply = tcp_read_reply(s, 2.0)
        finally:
            s.close()
        check_eq(status_of(reply) if reply else None, 200, "the same in two TCP segments")
        # A NUL that is not a quoted-pair is still refused.
        bad = OPTIONS.replace(b"From: <sip:probe@127.0.0.1>",
                              b'From: "a\x00b" <sip:probe@127.0.0.1>') + \
            b"Content-Length: 0\r\n\r\n"
        reply = send(sw, "udp", bad, timeout=0.5)
        check(reply is None or status_of(reply) == 400,
              "an unescaped NUL in a quoted string got %r" % reply)
        check_eq(sw.options("udp"), 200, "OPTIONS afterwards")


def test_bad_version_answered_to_the_source():
    # The Via names port 9; the answer must come back to the source port.
    for version in (b"SIP/3.0", b"SIP/1.0"):
        msg = (OPTIONS.replace(b"SIP/2.0\r\n", version + b"\r\n", 1)
               .replace(b"127.0.0.1:$LPORT", b"127.0.0.1:9") + b"Content-Length: 0\r\n\r\n")
        with Switch() as sw:
            for transport in ("udp", "tcp"):
                answer(sw, transport, msg, 505, version.decode())
            # Without rport the source still gets it (the switch's default).
            answer(sw, "udp", msg.replace(b";rport", b""), 505, version.decode() + " no rport")
    with Switch() as sw:
        answer(sw, "udp", corpus_file("06-bad-sip-version.sip"), 505, "corpus 06")


def test_via_transport_not_the_arrival():
    with Switch() as sw:
        headers = answer(sw, "tcp", corpus_file("47-tls-via.sip"), 200, "a TLS Via over TCP")
        check(headers["via"][0].startswith("SIP/2.0/TCP "), "Via of the answer: %r"
              % headers["via"])
        for via, transport in ((b"UDP", "tcp"), (b"TCP", "udp"), (b"TLS", "udp"),
                               (b"SCTP", "tcp")):
            msg = OPTIONS.replace(b"SIP/2.0/$TRANSPORT", b"SIP/2.0/" + via) + \
                b"Content-Length: 0\r\n\r\n"
            answer(sw, transport, msg, 200, "a %s Via" % via.decode())
        # On one TCP connection: a TLS Via request, then a usual one.
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=2)
        try:
            lport = s.getsockname()[1]
            buf = bytearray()
            for template in (corpus_file("47-tls-via.sip"),
                             corpus_file("00-valid-options.sip")):
                s.sendall(materialize(template, "tcp", sw.port, lport))
                reply = tcp_read_reply(s, 2.0, buf=buf)
                check_eq(status_of(reply) if reply else None, 200, "on one connection")
        finally:
            s.close()


if __name__ == "__main__":
    run_tests(globals())
