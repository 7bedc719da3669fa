#!/usr/bin/env python3
"""SIP capture to Homer (switch.hep): a call through the switch (SIPp caller
-> moonswitch -> SIPp carrier) with Kamailio's sipcapture module as the HEP
collector (test/kamailio/hep.cfg logs each packet's chunks). Both legs'
INVITE, 200, ACK, BYE and the BYE's 200 arrive with their addresses, the
agent id, and on the B-leg the A-leg's Call-ID as correlation id; a reload
starts and stops the capture, stateless answers (OPTIONS) included.

Python 3 standard library only. Builds on harness.py, peers.py and
calls_peers.py.
"""

import os
import re
import socket
import struct
import subprocess
import threading
import time

from harness import (Switch, check, check_eq, fail, free_port, require_tool, run_tests,
                     scratch_dir)
from peers import KAMAILIO_CFG_DIR
from calls_peers import caller, carrier, mapping, routing, run, wait_cdrs, wait_done

FIELDS = ["version", "family", "proto", "src", "sport", "dst", "dport", "sec", "usec",
          "type", "agent", "corr", "first", "callid", "cseq"]


class Collector:
    """Kamailio with sipcapture on udp:127.0.0.1:port; packets() gives one
    dict per HEP packet it decoded."""

    def __init__(self):
        self.kamailio = require_tool("kamailio")
        self.port = free_port()
        self.dir = scratch_dir("hep")
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        self.lines = []
        self.lock = threading.Lock()

    def __enter__(self):
        cmd = [self.kamailio, "-f", os.path.join(KAMAILIO_CFG_DIR, "hep.cfg"),
               "-l", "udp:127.0.0.1:%d" % self.port, "-P", os.path.join(self.dir, "k.pid"),
               "-w", self.dir, "-Y", self.dir, "-E", "-DD",
               "-A", 'DB_URL="text://%s"' % os.path.join(self.dir, "db")]
        self.log = open(os.path.join(self.dir, "kamailio.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=self.dir,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        # Ready when a probe of our own comes back decoded.
        deadline = time.monotonic() + 10
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail("kamailio exited with %s\n%s" % (self.proc.returncode, self.tail()))
            s.sendto(probe(), ("127.0.0.1", self.port))
            time.sleep(0.2)
            if any(p["corr"] == "probe" for p in self.packets()):
                s.close()
                return self
        s.close()
        fail("kamailio never decoded a HEP probe\n%s" % self.tail())

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.log.write(line)
            self.log.flush()
            with self.lock:
                self.lines.append(line)

    def tail(self, n=30):
        with self.lock:
            return "".join(self.lines[-n:])

    def packets(self):
        out = []
        with self.lock:
            lines = list(self.lines)
        for line in lines:
            m = re.search(r"<script>: HEP\|(.*)\|\s*$", line)
            if m:
                values = m.group(1).split("|")
                if len(values) == len(FIELDS):
                    p = dict(zip(FIELDS, values))
                    p["callid"] = p["callid"].partition(":")[2].strip()
                    p["cseq"] = p["cseq"].partition(":")[2].strip()
                    out.append(p)
        return out


def probe():
    def chunk(t, data):
        return struct.pack("!HHH", 0, t, len(data) + 6) + data
    sip = (b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")
    body = (chunk(1, b"\x02") + chunk(2, b"\x11") + chunk(3, socket.inet_aton("127.0.0.1"))
            + chunk(4, socket.inet_aton("127.0.0.1")) + chunk(7, struct.pack("!H", 1))
            + chunk(8, struct.pack("!H", 2)) + chunk(9, struct.pack("!I", 0))
            + chunk(10, struct.pack("!I", 0)) + chunk(11, b"\x01")
            + chunk(12, struct.pack("!I", 0)) + chunk(0x11, b"probe") + chunk(15, sip))
    return b"HEP3" + struct.pack("!H", len(body) + 6) + body


def kind(p):
    """"INVITE", "ACK", "BYE" for requests; "200 INVITE", "100 INVITE" for
    responses."""
    first = p["first"]
    if first.startswith("SIP/2.0 "):
        return "%s %s" % (first.split()[1], p["cseq"].split()[-1])
    return first.split()[0]


def hep_policy(hep_port, gw_port, agent_id=2001):
    return ('switch { hep = { address = "127.0.0.1:%d", id = %d }, '
            'sip = { resend_interval = 100, invite_timeout = 3 } }\n' % (hep_port, agent_id)
            + mapping() + routing("carrier", gw_port))


def wait_packets(col, pred, what, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [p for p in col.packets() if pred(p)]
        if got:
            return got
        time.sleep(0.1)
    fail("no HEP packet with %s; got:\n%s" % (what, "\n".join(
        "%s %s:%s -> %s:%s corr=%r" % (kind(p), p["src"], p["sport"], p["dst"], p["dport"],
                                       p["corr"]) for p in col.packets())))


def test_a_call_is_captured_on_both_legs():
    with Collector() as col, carrier("call_uas.xml") as uas, \
            Switch({"10-calls.lua": hep_policy(col.port, uas.port)}) as sw:
        uac = caller(sw, hold_ms=300)
        run(uac, sw)
        wait_done(uas, sw)
        rec = wait_cdrs(sw, 1)
        sp, up = str(sw.port), str(uas.port)
        # The A-leg: the caller's INVITE reached the switch's port, not from the carrier.
        invites = wait_packets(col, lambda p: kind(p) == "INVITE" and p["dport"] == sp,
                               "the caller's INVITE")
        a_id = invites[0]["callid"]
        check(a_id, "the A-leg INVITE's Call-ID")
        if rec.get("call_id"):
            check_eq(a_id, rec["call_id"], "A-leg Call-ID against the CDR")

        def leg(p):
            return "b" if up in (p["sport"], p["dport"]) else "a"

        wanted = {
            "a": [("INVITE", "in"), ("200 INVITE", "out"), ("ACK", "in"), ("BYE", "in"),
                  ("200 BYE", "out")],
            "b": [("INVITE", "out"), ("200 INVITE", "in"), ("ACK", "out"), ("BYE", "out"),
                  ("200 BYE", "in")],
        }
        deadline = time.monotonic() + 5
        while True:
            # (The harness's OPTIONS, start-up probes, are not the call.)
            pkts = [p for p in col.packets()
                    if p["corr"] != "probe" and not kind(p).endswith("OPTIONS")]
            seen = {(leg(p), kind(p), "in" if p["dport"] == sp else "out") for p in pkts}
            missing = [(lg, k, d) for lg, ks in wanted.items() for k, d in ks
                       if (lg, k, d) not in seen]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        check(not missing, "HEP packets missing: %r\nseen: %r" % (missing, sorted(seen)))
        b_id = None
        for p in pkts:
            check_eq(p["version"], "3", "HEP version")
            check_eq(p["family"], "2", "IP family")
            check_eq(p["proto"], "17", "IP protocol (UDP)")
            check_eq(p["type"], "1", "protocol type (SIP)")
            check_eq(p["agent"], "2001", "capture agent id")
            check(abs(int(p["sec"]) - time.time()) < 60, "timestamp %s" % p["sec"])
            check(0 <= int(p["usec"]) < 1000000, "microseconds %s" % p["usec"])
            check_eq(p["src"], "127.0.0.1", "source IP")
            check_eq(p["dst"], "127.0.0.1", "destination IP")
            check(sp in (p["sport"], p["dport"]), "the switch's port in %r" % p)
            if leg(p) == "b":
                b_id = b_id or p["callid"]
                check_eq(p["callid"], b_id, "one B-leg Call-ID")
                check_eq(p["corr"], a_id, "B-leg %s correlation id" % kind(p))
            else:
                check_eq(p["callid"], a_id, "A-leg Call-ID")
                check_eq(p["corr"], "", "A-leg %s correlation id" % kind(p))
        check(b_id and b_id != a_id, "the B-leg has its own Call-ID")
        # The caller's and the carrier's sides: their ports, not only ours.
        check(any(p["sport"] == up and kind(p) == "200 INVITE" for p in pkts),
              "the carrier's 200 from its port")


def test_reload_starts_and_stops_the_capture():
    with Collector() as col:
        plain = 'switch { sip = { resend_interval = 100 } }\n'
        with Switch({"10-s.lua": plain}) as sw:
            check_eq(sw.options(), 200, "OPTIONS without capture")
            time.sleep(0.3)
            check_eq([p for p in col.packets() if kind(p).endswith("OPTIONS")
                      and p["corr"] != "probe"], [], "packets without switch.hep")
            sw.write_policy("10-s.lua", 'switch { hep = { address = "127.0.0.1:%d", id = 7 }, '
                            'sip = { resend_interval = 100 } }\n' % col.port)
            rc, out, err = sw.ctl("return reload()")
            check_eq((rc, out.splitlines()[0] if out else out), (0, "true"), "reload (%r)" % err)
            check_eq(sw.options(), 200, "OPTIONS with capture")
            got = wait_packets(col, lambda p: p["corr"] != "probe" and kind(p) == "200 OPTIONS",
                               "the stateless 200 to OPTIONS")
            check_eq(got[0]["agent"], "7", "agent id after the reload")
            check_eq(got[0]["sport"], str(sw.port), "the 200 leaves the switch's port")
            wait_packets(col, lambda p: p["corr"] != "probe" and kind(p) == "OPTIONS"
                         and p["dport"] == str(sw.port), "the OPTIONS received")
            sw.write_policy("10-s.lua", plain)
            rc, out, err = sw.ctl("return reload()")
            check_eq(rc, 0, "reload back (%r)" % err)
            time.sleep(0.2)
            before = len(col.packets())
            check_eq(sw.options(), 200, "OPTIONS after the capture stopped")
            time.sleep(0.5)
            check_eq(len(col.packets()), before, "packets after switch.hep went")


if __name__ == "__main__":
    run_tests(globals())
