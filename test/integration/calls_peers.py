"""Helpers for the call tests (test_calls*.py): policies with mapping and
routing gateways, SIPp callers and carriers running the call_*.xml
scenarios, and the CDRs read back through moonctl.

Python 3 standard library only. Builds on harness.py and peers.py.
"""

import os
import re
import time
from xml.sax.saxutils import escape as xml_escape

from harness import check, fail, scratch_dir  # noqa: F401
from peers import SCENARIOS, Sipp, UdpPeer, ctl_value, lua_fields, lua_value, wait_until  # noqa: F401


def switch_policy(**sip):
    sip.setdefault("resend_interval", 100)
    sip.setdefault("invite_timeout", 3)
    return "switch { sip = { %s } }\n" % lua_fields(sip)


def one_carrier(gw_port, **gw):
    """The usual policy: customer 127.0.0.1, one routing gateway "carrier"."""
    return {"10-calls.lua": switch_policy() + mapping() + routing("carrier", gw_port, **gw)}


def sipp_log(sipp):
    """Everything SIPp logged of its messages (run with -trace_msg)."""
    text = ""
    for name in sorted(os.listdir(sipp.dir)):
        if name.endswith("_messages.log"):
            with open(os.path.join(sipp.dir, name), "rb") as f:
                text += f.read().decode("utf-8", "replace")
    return text


def sipp_messages(sipp):
    """SIPp's message log split into messages."""
    out = []
    for chunk in re.split(r"^-{20,}.*$", sipp_log(sipp), flags=re.M):
        chunk = re.sub(r"^\s*(UDP|TCP) message .*\n", "", chunk).strip()
        if chunk:
            out.append(chunk)
    return out


def sipp_timeline(sipp):
    """Each message SIPp logged (run with -trace_msg), in order, as
    (unix time, "sent" or "received", first line)."""
    out = []
    pat = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)\s*\n"
                     r"(?:UDP|TCP) message (sent|received)[^\n]*\n\s*\n?([^\r\n]*)", re.M)
    for m in pat.finditer(sipp_log(sipp)):
        t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + float(m.group(2))
        out.append((t, m.group(3), m.group(4).strip()))
    return out


def mapping(name="cust", addresses=("127.0.0.1",), **fields):
    f = {"addresses": list(addresses)}
    f.update(fields)
    return 'mapping_gateway "%s" { %s }\n' % (name, lua_fields(f))


def routing(name, port, prefixes=("1",), **fields):
    f = {"address": "127.0.0.1:%d" % port, "prefixes": list(prefixes)}
    f.update(fields)
    return 'routing_gateway "%s" { %s }\n' % (name, lua_fields(f))


def scenario(name, code=None, subst=None):
    """The path of a scenario; with code, a copy with @CODE@ replaced; with
    subst ({"@NAME@": text}), a copy with each placeholder replaced by the
    text, escaped for XML (SIPp takes no keys in a regexp or a status)."""
    path = os.path.join(SCENARIOS, name)
    if code is None and not subst:
        return path
    d = scratch_dir("scenario")
    out = os.path.join(d, name.replace(".xml", "_%s.xml" % (code or "subst")))
    with open(path) as f:
        text = f.read()
    if code is not None:
        text = text.replace("@CODE@", str(code))
    for k, v in (subst or {}).items():
        text = text.replace(k, xml_escape(v, {'"': "&quot;"}))
    with open(out, "w") as f:
        f.write(text)
    return out


def carrier(name="call_uas.xml", code=None, calls=1, extra=(), subst=None, ip="127.0.0.1",
            port=None):
    """A SIPp carrier (UAS) for `calls` calls; use as a context manager."""
    return Sipp(scenario(name, code, subst), workdir=scratch_dir("uas-" + name[:-4]),
                extra=["-m", str(calls)] + list(extra), ip=ip, port=port)


def register_account(sw, user, ip, port, password=None, scenario_name="regsrv_register.xml",
                     expires=300):
    """Register account `user` with Contact ip:port, sent from ip:port
    through SIPp with digest (the password defaults to "pw" + user); with
    regsrv_unregister.xml, remove that binding. The SIPp process has ended
    (and let go of the port) when this returns."""
    csv = os.path.join(sw.dir, "reg-%s-%d.csv" % (ip, port))
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n%s;[authentication username=%s password=%s];%s;%d;\n"
                % (user, user, password or "pw" + user, ip, expires))
    with Sipp(scenario_name, port=port, ip=ip, remote="127.0.0.1:%d" % sw.port,
              extra=["-inf", csv]) as s:
        rc = s.wait(20)
        if rc != 0:
            fail("%s of %s from %s:%d: sipp exited %r\n%s\n%s" % (
                scenario_name, user, ip, port, rc, s.report(), sw.log_tail(40)))
    time.sleep(0.3)  # the port is free again for the peer that answers there


def received_header(sipp, name, method="INVITE"):
    """The value of header `name` in the first `method` request a SIPp peer
    received (None when absent)."""
    for chunk in sipp_messages(sipp):
        if not chunk.startswith(method + " "):
            continue
        for line in chunk.split("\n")[1:]:
            k, sep, v = line.partition(":")
            if sep and k.strip().lower() == name.lower():
                return v.strip()
        return None
    return None


CALLER_KEYS = {"caller": "1001", "display": "2002", "rpid": "3003", "pai": "4004"}


def caller(sw, name="call_uac.xml", number="1555", to_user=None, code=None, hold_ms=200,
           calls=1, rate=None, extra=(), keys=None, ip="127.0.0.1", port=None):
    """A SIPp caller (UAC) towards the switch. `number` is the Request-Line
    user, `to_user` the To user (default: the same); `keys` replace or add
    to CALLER_KEYS; `ip` and `port` where it sends from (a carrier at
    127.0.0.2, say)."""
    args = ["-s", number, "-key", "to_user", to_user or number, "-d", str(hold_ms),
            "-m", str(calls)]
    for k, v in dict(CALLER_KEYS, **(keys or {})).items():
        args += ["-key", k, v]
    if rate:
        args += ["-r", str(rate)]
    return Sipp(scenario(name, code),
                workdir=scratch_dir("uac-" + os.path.basename(name)[:-4]),
                remote="127.0.0.1:%d" % sw.port, extra=args + list(extra), ip=ip, port=port)


def run(sipp, sw, timeout=20, want=0):
    """Start a caller and wait for it; fail with both sides' logs unless it
    exits with `want`."""
    sipp.start()
    rc = sipp.wait(timeout)
    if rc != want:
        sipp.kill()
        scen = os.path.basename(sipp.args[sipp.args.index("-sf") + 1])
        fail("sipp %s exited %r (want %r)\n%s\n%s" % (scen, rc, want, sipp.report(),
                                                      sw.log_tail(60)))
    return rc


def wait_done(sipp, sw, timeout=10):
    rc = sipp.wait(timeout)
    if rc != 0:
        sipp.kill()
        fail("carrier sipp exited %r\n%s\n%s" % (rc, sipp.report(), sw.log_tail(60)))


CDR_FIELDS = ("caller", "callee", "original_callee", "routed_callee", "mapping_gateway",
              "routing_gateway", "start", "answer", "stop", "duration", "status", "hangup",
              "reason")

_CDR_CHUNK = """
local r = cdrs.last(%d)[%d]
if r == nil then return "absent" end
local out = {}
for _, k in ipairs{%s} do
  local v = r[k]
  out[#out + 1] = k .. "\\t" .. type(v) .. "\\t" .. tostring(v)
end
return table.concat(out, "\\n")
"""


def cdr(sw, i=1):
    """The i-th newest CDR as a dict (None when absent); numbers as ints."""
    chunk = _CDR_CHUNK % (i, i, ", ".join(lua_value(k) for k in CDR_FIELDS))
    out = ctl_value(sw, chunk)
    if out == "absent":
        return None
    d = {}
    for line in out.split("\n"):
        k, typ, value = line.split("\t", 2)
        d[k] = None if typ == "nil" else int(float(value)) if typ == "number" else value
    return d


def wait_cdrs(sw, n, timeout=10):
    """Wait until at least n CDRs are stored; the newest."""
    wait_until(lambda: int(ctl_value(sw, "return cdrs.count()")) >= n, timeout,
               what="%d CDRs" % n)
    return cdr(sw)


def check_cdr(rec, **want):
    check(rec is not None, "no CDR")
    for k, v in want.items():
        check(rec.get(k) == v, "CDR %s: expected %r, got %r (%r)" % (k, v, rec.get(k), rec))


def received_invite(sipp):
    """(Request-URI, To) of the first INVITE a SIPp carrier received."""
    for name in sorted(os.listdir(sipp.dir)):
        if not name.endswith("_messages.log"):
            continue
        with open(os.path.join(sipp.dir, name), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        m = re.search(r"^INVITE (\S+) SIP/2.0\r?$", text, re.M)
        if not m:
            continue
        rest = text[m.end():]
        to = re.search(r"^(?:To|t):\s*(.*?)\r?$", rest, re.M | re.I)
        return m.group(1), to.group(1) if to else None
    return None, None


def calls_count(sw):
    return int(ctl_value(sw, "return calls.count()"))


class OptionsPeer(UdpPeer):
    """A gateway on a UDP socket of 127.0.0.1 that answers OPTIONS (or each
    of `methods`) with `code` while `answering` is true and answers nothing
    else. Records each request (one entry per Call-ID and method:
    retransmissions are not counted again) with its Request-URI."""

    def __init__(self, code=200, answering=True, methods=("OPTIONS",)):
        self.code = code
        self.answering = answering
        self.answered_methods = tuple(methods)
        self.log = []  # (time, method, answered, call-id, request-uri)
        super().__init__()

    def on_datagram(self, data, addr):
        text = data.decode("utf-8", "replace")
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        method, _, rest = head[0].partition(" ")
        if method.startswith("SIP/"):
            return
        uri = rest.split(" ", 1)[0]
        answer = method in self.answered_methods and self.answering
        ci = ""
        for h in head[1:]:
            if h.split(":", 1)[0].strip().lower() in ("call-id", "i"):
                ci = h.split(":", 1)[1].strip()
        with self.lock:
            if any(c == ci and m == method for _, m, _, c, _ in self.log):
                pass  # a retransmission: nta goes on until timer F
            else:
                self.log.append((time.time(), method, answer, ci, uri))
        if not answer:
            return
        keep = [h for h in head[1:] if h.split(":", 1)[0].strip().lower() in
                ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]
        keep = [h + ";tag=gw1" if h.split(":", 1)[0].strip().lower() in ("to", "t") and
                ";tag=" not in h else h for h in keep]
        reply = "SIP/2.0 %d Whatever\r\n%s\r\nContent-Length: 0\r\n\r\n" % (
            self.code, "\r\n".join(keep))
        self.sock.sendto(reply.encode(), addr)

    def methods(self):
        with self.lock:
            return [m for _, m, _, _, _ in self.log]

    def uris(self, method):
        """The Request-URIs of the `method` requests, in order."""
        with self.lock:
            return [u for _, m, _, _, u in self.log if m == method]

    def count(self, method="OPTIONS", answered=None):
        with self.lock:
            return sum(1 for _, m, a, _, _ in self.log
                       if m == method and (answered is None or a == answered))
