"""Hostile traffic: `switch { security = { source_rate, source_ban,
max_calls } }`. A source that is no gateway and sends over source_rate is
banned (its datagrams dropped unanswered, before parsing), shows in
suspensions() as kind "flood", survives a restart, and can be lifted; a
phone under the rate registers meanwhile; gateways and sources the policy's
on_flood spares are not banned; TCP connections are capped per source,
silent ones closed, banned ones refused; max_calls answers 503 with
Retry-After. Also measures the CPU a banned flood costs per datagram.

The whole of 127/8 is local: the flooders bind to 127.0.0.2 and up."""

import os
import re
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, TestFailure, check, check_eq, parse_response  # noqa: E402
from harness import run_tests  # noqa: E402
from harness import free_port, scratch_dir, status_of  # noqa: E402
from peers import wait_until  # noqa: E402
from test_registrar_auth import UA  # noqa: E402

FLOODER = "127.0.0.2"
PHONE = "127.0.0.3"


def policy(rate=50, ban=60, max_calls=0, extra=""):
    text = ("switch { sip = { resend_interval = 100, invite_timeout = 5 },\n"
            "  security = { source_rate = %d, source_ban = %d, max_calls = %d } }\n"
            'mapping_gateway "phones" { type = "register" }\n'
            'account "1001" { password = "pw1001", mapping_gateway = "phones" }\n'
            % (rate, ban, max_calls))
    return {"00-switch.lua": text + extra}


def options(port, src_port, host=FLOODER, transport="UDP"):
    t = uuid.uuid4().hex[:16]
    return ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"
            "Via: SIP/2.0/%s %s:%d;branch=z9hG4bK-%s;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:flood@%s>;tag=%s\r\n"
            "To: <sip:127.0.0.1:%d>\r\n"
            "Call-ID: %s@flood\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
            % (port, transport, host, src_port, t, host, t, port, t)).encode()


def udp_from(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    return s


def answered(port, ip, timeout=1.0):
    """Whether a fresh OPTIONS from ip gets an answer."""
    s = udp_from(ip)
    try:
        s.sendto(options(port, s.getsockname()[1], ip), ("127.0.0.1", port))
        s.settimeout(timeout)
        try:
            return status_of(s.recv(65535)) is not None
        except socket.timeout:
            return False
    finally:
        s.close()


def flood(port, ip, count, answers=None):
    """Send `count` OPTIONS from ip as fast as possible; count answers."""
    s = udp_from(ip)
    s.setblocking(False)
    got = 0
    try:
        msg = options(port, s.getsockname()[1], ip)
        for i in range(count):
            try:
                s.sendto(msg, ("127.0.0.1", port))
            except BlockingIOError:
                time.sleep(0.0005)
            try:
                while True:
                    s.recv(65535)
                    got += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        time.sleep(0.3)
        try:
            while True:
                s.recv(65535)
                got += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
    finally:
        s.close()
    if answers is not None:
        answers.append(got)
    return got


def ctl_num(sw, chunk):
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "%s: %s" % (chunk, err))
    return float(out.strip())


def flood_suspensions(sw):
    rc, out, err = sw.ctl('local o = {} for _, s in ipairs(suspensions()) do '
                          'if s.kind == "flood" then o[#o + 1] = s.name .. "=" .. '
                          'string.format("%d", s["until"] - os.time()) end end '
                          'return table.concat(o, " ")')
    check(rc == 0, "suspensions(): %s" % err)
    return dict(x.split("=") for x in out.split())


def wait_banned(sw, ip, timeout=10):
    """The switch reads one datagram a loop turn: under load a flood may
    still be queued when the sender is done. Wait for the ban."""
    wait_until(lambda: ip in flood_suspensions(sw), timeout, what="the ban of %s" % ip)


class RetransmittingUA(UA):
    """Retransmits like RFC 3261's timer E (0.5 s, doubling) until answered:
    until the flooder is banned its datagrams can fill the switch's socket
    buffer, and the kernel then drops others' too, as a real phone's."""

    def recv(self, timeout=8.0):
        """The final response to the last request (its CSeq: an answer to an
        earlier one's retransmission is skipped)."""
        cseq = re.search(rb"\r\nCSeq: (\d+)", self.last).group(1).decode()
        deadline = time.monotonic() + timeout
        interval = 0.5
        while True:
            try:
                st, headers = UA.recv(self, max(0.01, min(interval,
                                                          deadline - time.monotonic())))
                if headers.get("cseq", [""])[0].split()[0:1] == [cseq]:
                    return st, headers
                continue
            except TestFailure:
                if time.monotonic() >= deadline:
                    raise
                self.sock.sendto(self.last, ("127.0.0.1", self.port))
                interval = min(interval * 2, 4.0)


def answered_retrying(port, ip, tries=4):
    return any(answered(port, ip) for _ in range(tries))


def phone_from(sw, ip, user="1001"):
    ua = RetransmittingUA(sw.port, user)
    ua.sock.close()
    ua.sock = udp_from(ip)
    ua.lport = ua.sock.getsockname()[1]
    ua.contact_host = ip
    return ua


def test_flooder_banned_phone_registers():
    with Switch(policy(rate=50, ban=60), log_level="info") as sw:
        heap_before = ctl_num(sw, "return stats().heap_in_use")
        answers = []
        t = threading.Thread(target=flood, args=(sw.port, FLOODER, 20000, answers))
        t.start()
        heap_peak = heap_before
        try:
            # A phone under the rate, not a gateway, registers meanwhile.
            ua = phone_from(sw, PHONE)
            with ua:
                check_eq(ua.register(expires=60)[0], 200, "the phone's REGISTER during a flood")
                for _ in range(5):
                    check(answered_retrying(sw.port, PHONE),
                          "the phone's OPTIONS during the flood")
                    heap_peak = max(heap_peak, ctl_num(sw, "return stats().heap_in_use"))
        finally:
            t.join()
        # The burst is answered (FLOOD_BURST(50) = 50 tokens plus what
        # refills while it is spent), then nothing.
        check(answers[0] <= 80, "the flooder got %d answers" % answers[0])
        wait_banned(sw, FLOODER)
        bans = flood_suspensions(sw)
        check(FLOODER in bans, "no flood suspension for %s: %r" % (FLOODER, bans))
        check(50 <= int(bans[FLOODER]) <= 60, "ban left: %s s" % bans[FLOODER])
        check(PHONE not in bans, "the phone is banned too")
        check(not answered(sw.port, FLOODER), "a banned source got an answer")
        check(answered(sw.port, PHONE), "the phone after the flood")
        # Dropped in the switch until the kernel's filter took over.
        dropped = ctl_num(sw, "return security.stats().dropped")
        check(dropped > 0, "dropped %d datagrams" % dropped)
        check_eq(ctl_num(sw, "return security.stats().kernel"), 1, "bans in the kernel filter")
        log = sw.log()
        check_eq(log.count("%s banned for 60 s" % FLOODER), 1, "ban log lines")
        grown = heap_peak - heap_before
        print("  flooder answered %d of 20000; dropped %d; heap %+.0f KiB during the flood"
              % (answers[0], dropped, grown / 1024))
        check(grown < 4 * 1024 * 1024, "heap grew by %.0f bytes during the flood" % grown)


def test_ban_survives_restart_and_lift():
    top = scratch_dir("flood-restart")
    data = os.path.join(top, "data")
    with Switch(policy(rate=20, ban=300), data_dir=data) as sw:
        flood(sw.port, FLOODER, 500)
        wait_banned(sw, FLOODER)
        rc, out, err = sw.ctl('return security.ban("127.0.0.4", 120)')
        check_eq((rc, out.strip()), (0, "true"), "security.ban")
        rc, out, err = sw.ctl('return security.ban("not-an-ip")')
        check("not an IP" in out, "security.ban of a name: %r" % out)
    with Switch(policy(rate=20, ban=300), data_dir=data) as sw:
        bans = flood_suspensions(sw)
        check(FLOODER in bans and "127.0.0.4" in bans, "bans after a restart: %r" % bans)
        check(not answered(sw.port, FLOODER), "a ban restored from the store lets through")
        check(not answered(sw.port, "127.0.0.4"), "the policy's ban lets through")
        rc, out, err = sw.ctl('return suspensions.lift("%s")' % FLOODER)
        check_eq(out.strip(), "true", "suspensions.lift")
        rc, out, err = sw.ctl('return suspensions.lift("%s")' % FLOODER)
        check_eq(out.strip(), "false", "a second lift")
        check(answered(sw.port, FLOODER), "a lifted source still unanswered")
        rc, out, err = sw.ctl('return security.lift("127.0.0.4")')
        check_eq(out.strip(), "true", "security.lift")
        check(answered(sw.port, "127.0.0.4"), "lifted by security.lift, still unanswered")
        check(sw.wait_log("%s: ban lifted" % FLOODER, 2), "lift not logged")
        rc, out, err = sw.ctl("return suspensions")
        check("(0 suspended)" in out, "suspensions printed: %r" % out)
    with Switch(policy(rate=20, ban=300), data_dir=data) as sw:
        check_eq(flood_suspensions(sw), {}, "lifted bans after another restart")


def test_ban_ends():
    with Switch(policy(rate=20, ban=2), log_level="info") as sw:
        flood(sw.port, FLOODER, 300)
        wait_banned(sw, FLOODER)
        check(sw.wait_log("%s: ban over" % FLOODER, 5), "ban end not logged")
        check(answered(sw.port, FLOODER), "unanswered after the ban")
        check_eq(sw.log().count("%s: ban over" % FLOODER), 1, "ban end log lines")


def socket_drops(port):
    """The kernel's drop count of the switch's UDP socket on 127.0.0.1:port
    (its filter's drops among them)."""
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == "0100007F:%04X" % port:
                return int(cols[-1])
    return None


def test_many_bans_in_the_kernel():
    # 300 bans: the kernel's filter searches them (a tree over the sorted
    # addresses); banned ones at its edges and inside are dropped, the
    # addresses between and around them are not.
    with Switch(policy(rate=20, ban=600), log_level="info") as sw:
        rc, out, err = sw.ctl('for i = 1, 300 do assert(security.ban('
                              '"127.1." .. (math.floor(i / 2) + 1) .. "." .. (i % 2 * 2 + 1), 600)) end '
                              'return security.stats().banned')
        check_eq((rc, out.strip()), (0, "300"), "300 bans")
        wait_until(lambda: ctl_num(sw, "return security.stats().kernel") == 300, 3,
                   what="the kernel filter to hold 300 bans")
        # Banned: 127.1.1.3, 127.1.2-150.1 and .3, 127.1.151.1.
        drops = socket_drops(sw.port)
        for ip in ("127.1.1.3", "127.1.2.1", "127.1.76.1", "127.1.76.3", "127.1.151.1"):
            check(not answered(sw.port, ip, 0.5), "%s is banned, but answered" % ip)
        check_eq(socket_drops(sw.port) - drops, 5, "datagrams the kernel's filter dropped")
        for ip in ("127.1.1.1", "127.1.1.2", "127.1.76.2", "127.1.151.3", "127.1.152.1",
                   "127.0.0.12"):
            check(answered(sw.port, ip), "%s is not banned, but unanswered" % ip)
        rc, out, err = sw.ctl('return security.lift("127.1.76.1")')
        check_eq(out.strip(), "true", "lift")
        wait_until(lambda: answered(sw.port, "127.1.76.1", 0.5), 3, what="the lifted source")


def test_responses_do_not_count():
    # A peer answering many requests of ours (sip.request from a policy,
    # keepalives) is no flooder: responses take no token.
    with Switch(policy(rate=20, ban=60), log_level="info") as sw:
        s = udp_from("127.0.0.11")
        for i in range(500):
            t = uuid.uuid4().hex[:12]
            s.sendto(("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s\r\n"
                      "From: <sip:a@x>;tag=%s\r\nTo: <sip:b@x>;tag=1\r\nCall-ID: %s\r\n"
                      "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                      % (sw.port, t, t, t)).encode(), ("127.0.0.1", sw.port))
        s.close()
        # Processed in order: once an OPTIONS sent after them is answered,
        # they all were.
        check(answered(sw.port, "127.0.0.11", 10), "the answering peer after its responses")
        check_eq(flood_suspensions(sw), {}, "bans after 500 responses")
        check(answered(sw.port, "127.0.0.11"), "the answering peer after its responses")


def test_gateways_and_on_flood_spared():
    extra = ('mapping_gateway "cust" { addresses = { "127.0.0.5" } }\n'
             'flood_seen = {}\n'
             'function on_flood(source, rate)\n'
             '  flood_seen[source] = rate\n'
             '  if source == "127.0.0.6" then return false end\n'
             'end\n')
    with Switch(policy(rate=20, ban=60, extra=extra), log_level="info") as sw:
        for ip in ("127.0.0.5", "127.0.0.6", "127.0.0.7"):
            flood(sw.port, ip, 400)
        wait_banned(sw, "127.0.0.7")
        check(sw.wait_log("spared by on_flood", 5), "the spare is not logged")
        bans = flood_suspensions(sw)
        check_eq(sorted(bans), ["127.0.0.7"], "banned sources")
        check(answered(sw.port, "127.0.0.5"), "the mapping gateway is unanswered")
        check(answered(sw.port, "127.0.0.6"), "the spared source is unanswered")
        rc, out, err = sw.ctl('return flood_seen["127.0.0.6"] > 20, flood_seen["127.0.0.5"]')
        check_eq(out.split(), ["true", "nil"], "on_flood's arguments")
        check(sw.wait_log("127.0.0.6 sends", 1) and "spared by on_flood" in sw.log(),
              "the spare is not logged")
        check_eq(ctl_num(sw, "return security.stats().spared"), 1, "spared count")


def tcp_from(ip, port, timeout=2.0):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.bind((ip, 0))
    c.settimeout(timeout)
    c.connect(("127.0.0.1", port))
    return c


def closed_by_peer(c, timeout=2.0):
    c.settimeout(timeout)
    try:
        return c.recv(65535) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_tcp_ban_and_caps():
    with Switch(policy(rate=20, ban=60), log_level="info") as sw:
        # Requests pipelined down one connection count too: banned, closed.
        c = tcp_from("127.0.0.8", sw.port)
        lport = c.getsockname()[1]
        try:
            c.sendall(b"".join(options(sw.port, lport, "127.0.0.8", "TCP") for _ in range(200)))
        except OSError:
            pass
        wait_until(lambda: "127.0.0.8" in flood_suspensions(sw), 5, what="the TCP flooder's ban")
        c.close()
        # A banned source's new connection is closed unanswered.
        c = tcp_from("127.0.0.8", sw.port)
        try:
            c.sendall(options(sw.port, c.getsockname()[1], "127.0.0.8", "TCP"))
        except OSError:
            pass
        check(closed_by_peer(c), "a banned source's connection stays open")
        c.close()
        # FLOOD_CONN_PER_SOURCE (256) connections from one source that is no
        # gateway, each with half a request; the next one is refused.
        conns = []
        try:
            for _ in range(256):
                x = tcp_from("127.0.0.9", sw.port)
                x.sendall(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP")
                conns.append(x)
            time.sleep(0.3)
            extra = tcp_from("127.0.0.9", sw.port)
            check(closed_by_peer(extra), "connection 257 from one source is open")
            extra.close()
            check(sw.options("tcp") == 200, "another source over TCP meanwhile")
        finally:
            for x in conns:
                x.close()
        wait_until(lambda: ctl_num(sw, "return security.stats().connections") == 0, 5,
                   what="the connections to be forgotten")
        # A connection that says nothing is closed after FLOOD_CONN_SILENT_MS.
        quiet = tcp_from("127.0.0.10", sw.port)
        t0 = time.monotonic()
        check(closed_by_peer(quiet, 15), "a silent connection is still open after 15 s")
        took = time.monotonic() - t0
        check(8 < took < 14, "the silent connection closed after %.1f s" % took)
        quiet.close()
        check(sw.wait_log("refused: banned", 1), "the refused connection is not logged")


def test_max_calls():
    # The routing gateway is a socket that never answers, so the first call
    # stays in progress (invite_timeout 5 s) and the second one is over.
    carrier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    carrier.bind(("127.0.0.1", 0))
    gw = carrier.getsockname()[1]
    extra = ('mapping_gateway "cust" { addresses = { "127.0.0.1" } }\n'
             'routing_gateway "carrier" { address = "127.0.0.1:%d", prefixes = { "1" } }\n'
             % gw)
    try:
        with Switch(policy(max_calls=1, extra=extra)) as sw:
            caller = udp_from("127.0.0.1")

            def invite(n):
                t = uuid.uuid4().hex[:12]
                return ("INVITE sip:1555%d@127.0.0.1:%d SIP/2.0\r\n"
                        "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"
                        "Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.1>;tag=%s\r\n"
                        "To: <sip:1555%d@127.0.0.1>\r\nCall-ID: %s@mc\r\nCSeq: 1 INVITE\r\n"
                        "Contact: <sip:100@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n"
                        % (n, sw.port, caller.getsockname()[1], t, t, n, t,
                           caller.getsockname()[1])).encode()

            caller.sendto(invite(1), ("127.0.0.1", sw.port))
            carrier.settimeout(3)
            data, _ = carrier.recvfrom(65535)
            check(data.startswith(b"INVITE"), "the carrier got %r" % data[:40])
            check_eq(ctl_num(sw, "return calls.count()"), 1, "calls in progress")
            caller.sendto(invite(2), ("127.0.0.1", sw.port))
            caller.settimeout(3)
            while True:
                st, headers, _ = parse_response(caller.recv(65535))
                if st >= 200:
                    break
            check_eq(st, 503, "the call over max_calls")
            check_eq(headers.get("retry-after", [""])[0].split(";")[0].strip(), "5",
                     "Retry-After")
            caller.close()
    finally:
        carrier.close()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def blast(sock, msg, dest, seconds):
    """Send msg to dest for `seconds` as fast as Python can; how many."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(1000):
            sock.sendto(msg, dest)
        sent += 1000
    return sent


def test_cost_of_a_banned_flood():
    """CPU the switch spends on datagrams from a banned source (prints it):
    over IPv4 the kernel's socket filter drops them; over IPv6 (no kernel
    filter) the event port does, with a peek and a one-byte recv each."""
    v6 = socket.has_ipv6
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
    except OSError:
        v6 = False
    port = free_port()
    extra = ["--listen", "udp:[::1]:%d" % port] if v6 else []
    with Switch(policy(rate=20, ban=600), log_level="info", port=port,
                extra_args=extra) as sw:
        hz = os.sysconf("SC_CLK_TCK")
        flood(sw.port, FLOODER, 200)
        wait_banned(sw, FLOODER)
        before_cpu = cpu_ticks(sw.pid)
        s = udp_from(FLOODER)
        sent = blast(s, options(sw.port, s.getsockname()[1]), ("127.0.0.1", sw.port), 2.0)
        s.close()
        time.sleep(0.3)
        cpu = (cpu_ticks(sw.pid) - before_cpu) / hz
        print("  banned IPv4 flood (kernel filter): %d datagrams sent, switch CPU %.2f s: "
              "%.3f us each" % (sent, cpu, cpu / sent * 1e6))
        check(sw.options() == 200, "the switch after the IPv4 flood")
        if not v6:
            print("  no IPv6 loopback: the userspace drop is not measured")
            return
        rc, out, err = sw.ctl('return security.ban("::1", 600)')
        check_eq(out.strip(), "true", "security.ban(\"::1\")")
        before_drop = ctl_num(sw, "return security.stats().dropped")
        before_cpu = cpu_ticks(sw.pid)
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        msg = options(port, s.getsockname()[1], "[::1]")
        sent = blast(s, msg, ("::1", port), 2.0)
        s.close()
        time.sleep(0.3)
        cpu = (cpu_ticks(sw.pid) - before_cpu) / hz
        dropped = ctl_num(sw, "return security.stats().dropped") - before_drop
        check(dropped > 1000, "dropped only %d of %d" % (dropped, sent))
        per = cpu / dropped * 1e6
        print("  banned IPv6 flood (event port): %d datagrams dropped, switch CPU %.2f s: "
              "%.2f us each, %.0f datagrams/s per core" % (dropped, cpu, per,
                                                           1e6 / per if per else 0))
        check(sw.options() == 200, "the switch after the IPv6 flood")


if __name__ == "__main__":
    run_tests(globals())
