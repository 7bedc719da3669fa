"""NAT keepalive in crlf mode (RFC 5626 4.4.1), and keepalive settings
changed by a reload.

Over UDP the switch sends "\\r\\n\\r\\n" from its own listening socket to the
binding's source; nothing answers it, so the binding must stay. Over TCP it
sends it on the REGISTER's connection, and a closed connection removes the
binding."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Switch, check, check_eq, parse_response, run_tests,  # noqa: E402
                     tcp_read_reply)
from peers import wait_until  # noqa: E402
from test_registrar_auth import UA, accounts_policy, endpoints  # noqa: E402

CRLF2 = b"\r\n\r\n"


class TcpUA(UA):
    """The digest UA of test_registrar_auth over one TCP connection."""

    def __init__(self, port, user, **kw):
        super().__init__(port, user, **kw)
        self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.lport = self.sock.getsockname()[1]
        self.buf = bytearray()

    def build(self, **kw):
        return super().build(**kw).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP", 1)

    def send(self, data):
        self.last = data
        self.sock.sendall(data)

    def recv(self, timeout=3.0):
        msg = tcp_read_reply(self.sock, timeout, True, self.buf)
        check(msg, "no answer over TCP to:\n%s" % self.last.decode())
        parsed = parse_response(msg)
        check(parsed, "not a response: %r" % msg)
        return parsed[0], parsed[1]

    def read_for(self, seconds):
        """Every byte the switch sends on the connection for a while; b""
        at once if it closed."""
        data = bytes(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                break
            data += chunk
        return data


def datagrams(ua, seconds, until=None):
    """What reaches the UA's UDP socket for a while, or until until(list so
    far) holds: [(time, data, sender)]. OPTIONS are answered (and counted)
    as UA.poll does."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and out and until(out)):
        ua.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, addr = ua.sock.recvfrom(65535)
        except (socket.timeout, OSError):
            continue
        out.append((time.monotonic(), data, addr))
        if data.startswith(b"OPTIONS "):
            ua._answer(data)
    return out


def test_crlf_udp_and_tcp():
    # misses = 1: were a CRLF ping counted as unanswered, the UDP binding
    # would go after the first one.
    pol = accounts_policy(endpoint_keepalive="crlf", endpoint_keepalive_interval=5,
                          endpoint_keepalive_misses=1, users=("1001", "1002", "1003"))
    with Switch(pol) as sw:
        check(sw.wait_log("NAT keepalive: crlf every 5 s", 2), "settings not applied\n%s"
              % sw.log_tail())
        with UA(sw.port, "1001", contact_host="10.0.0.1") as udp, \
                UA(sw.port, "1002") as direct, \
                TcpUA(sw.port, "1003", contact_host="10.0.0.3") as tcp:
            check_eq(udp.register(expires=60)[0], 200, "UDP NAT registration")
            t_reg = time.monotonic()
            check_eq(direct.register(expires=60)[0], 200, "direct registration")
            check_eq(tcp.register(expires=60)[0], 200, "TCP NAT registration")
            rows = endpoints(sw, "1003")
            check_eq(len(rows), 1, "TCP binding")
            check_eq(rows[0]["source"], "127.0.0.1:%d" % tcp.lport, "TCP source")

            # UDP: a CRLF CRLF within each interval, from the switch's own
            # listening socket (the pinhole's other end), and nothing else.
            got = datagrams(udp, 10.5, until=lambda out: len(out) >= 2)
            check(got, "no datagram reached the NAT binding in 10.5 s\n%s" % sw.log_tail())
            for _, data, addr in got:
                check_eq(data, CRLF2, "keepalive datagram")
                check_eq(addr, ("127.0.0.1", sw.port), "keepalive sender")
            check(len(got) >= 2, "CRLF keepalives in 10.5 s: %d" % len(got))
            check(got[0][0] - t_reg <= 7, "first CRLF after %.1f s" % (got[0][0] - t_reg))
            check_eq(udp.options_seen, 0, "OPTIONS in crlf mode")
            check_eq(datagrams(direct, 0.1), [], "keepalives to a binding not behind NAT")
            # Nothing answered, and the binding stays.
            check_eq(len(endpoints(sw, "1001")), 1, "UDP binding after unanswered CRLFs")

            # TCP: the same bytes on the REGISTER's connection.
            stream = tcp.read_for(0.5)
            check(CRLF2 in stream, "no CRLF CRLF on the TCP connection: %r" % stream)
            check_eq(stream.replace(CRLF2, b""), b"", "bytes on the TCP connection")
            # The connection closes: the binding goes at its next slot.
            tcp.sock.close()
            t_close = time.monotonic()
            wait_until(lambda: endpoints(sw, "1003") == [], 8,
                       what="the TCP binding to go with its connection")
            check(time.monotonic() - t_close <= 7, "removal took too long")
            check(sw.wait_log("connection closed", 1), "reason not logged\n%s" % sw.log_tail())
            check_eq(len(endpoints(sw, "1001")), 1, "the UDP binding stays")


def test_reload_changes_interval_and_mode():
    def reload(**kw):
        sw.write_policy("00-switch.lua", accounts_policy(**kw)["00-switch.lua"])
        rc, out, err = sw.ctl("return (reload())")
        check_eq((rc, out.strip()), (0, "true"), "reload (%s)" % err)

    with Switch(accounts_policy(endpoint_keepalive="crlf",
                                endpoint_keepalive_interval=3600)) as sw:
        with UA(sw.port, "1001", contact_host="10.0.0.1") as ua:
            check_eq(ua.register(expires=60)[0], 200, "NAT registration")
            check_eq(datagrams(ua, 0.5), [], "keepalives within 0.5 s of 3600")

            # A shorter interval reschedules the binding into the new round:
            # its keepalive comes within 5 s, not in an hour.
            reload(endpoint_keepalive="crlf", endpoint_keepalive_interval=5)
            t = time.monotonic()
            got = datagrams(ua, 8, until=lambda out: True)
            check(got and got[0][1] == CRLF2, "no CRLF after the reload: %r\n%s"
                  % (got, sw.log_tail()))
            check(got[0][0] - t <= 6.5, "first CRLF %.1f s after the reload" % (got[0][0] - t))

            # options: the next keepalive is an OPTIONS; answered, no misses.
            reload(endpoint_keepalive="options", endpoint_keepalive_interval=5)
            got = datagrams(ua, 8, until=lambda out: out[-1][1].startswith(b"OPTIONS "))
            check(any(d.startswith(b"OPTIONS ") for _, d, _ in got),
                  "no OPTIONS after switching to options: %r" % got)
            check_eq(len(endpoints(sw, "1001")), 1, "binding in options mode")

            # off: nothing for a whole interval.
            reload(endpoint_keepalive="off", endpoint_keepalive_interval=5)
            datagrams(ua, 0.3)  # an OPTIONS answer in flight
            check_eq(datagrams(ua, 5.5), [], "keepalives with endpoint_keepalive = off")
            check_eq(len(endpoints(sw, "1001")), 1, "binding with keepalives off")
        check(sw.wait_log("NAT keepalive: off", 1), "mode change not logged")


if __name__ == "__main__":
    run_tests(globals())
