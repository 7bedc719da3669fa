"""SIP peers for the outbound registration tests: a real Kamailio registrar
(test/kamailio/registrar.cfg), a registrar that never answers, SIPp in the
background, and helpers to write registration policies and read the live
`registrations` objects through moonctl.

Python 3 standard library only. Builds on harness.py (imported, not changed).
"""

import os
import re
import shutil
import signal
import sys
import socket
import subprocess
import threading
import time

from harness import (HERE, KEEP, SOURCE_DIR, check, fail, free_port,  # noqa: F401
                     options_status, require_tool, scratch_dir)

KAMAILIO_CFG_DIR = os.path.join(SOURCE_DIR, "test", "kamailio")
SCENARIOS = os.path.join(HERE, "scenarios")

REG_LINE = re.compile(
    r"REG ci=(?P<ci>\S+) cseq=(?P<cseq>\S+) from=(?P<from_>\S+) contact=(?P<contact>.*?) "
    r"expires=(?P<expires>\S+) privacy=(?P<privacy>\S+) ua=(?P<ua>.*?) auth=(?P<auth>\S+) "
    r"src=(?P<src>\S+)\s*$")
AUTHFAIL_LINE = re.compile(r"AUTHFAIL ci=(?P<ci>\S+) auth=(?P<auth>\S+)")
SAVED_LINE = re.compile(r"SAVED aor=(?P<aor>\S+) proto=(?P<proto>\S+) socket=(?P<socket>\S+) "
                        r"src=(?P<src>\S+)")
RELAY_LINE = re.compile(r"RELAY (?P<method>\S+) ci=(?P<ci>\S+) proto=(?P<proto>\S+) "
                        r"src=(?P<src>\S+)(?: route=(?P<route>.*))?")


def wait_until(fn, timeout, interval=0.1, what=None):
    """Call fn until it returns something truthy; that value. Fails after
    timeout seconds (with `what` in the message) unless what is None, then
    returns the last (falsy) value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            if what is not None:
                fail("timed out after %.1f s waiting for %s (last value %r)"
                     % (timeout, what, value))
            return value
        time.sleep(interval)


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


class _LineReader(threading.Thread):
    """Reads a pipe line by line, stamping each line with time.time()."""

    def __init__(self, pipe, log_path):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines = []  # (t, text)
        self.lock = threading.Lock()
        self.log = open(log_path, "ab")

    def run(self):
        try:
            for raw in iter(self.pipe.readline, b""):
                t = time.time()
                self.log.write(raw)
                self.log.flush()
                with self.lock:
                    self.lines.append((t, raw.decode("utf-8", "replace").rstrip("\r\n")))
        finally:
            self.log.close()

    def snapshot(self):
        with self.lock:
            return list(self.lines)


class Kamailio:
    """test/kamailio/registrar.cfg on udp:127.0.0.1:port, in the foreground.

        with Kamailio(max_expires=20) as k:
            ... k.port ... k.registers() ... k.wait_for(lambda regs: ..., 5)
    """

    def __init__(self, port=None, max_expires=None, min_expires=None, algorithm=None,
                 cfg="registrar.cfg", label="kamailio", workdir=None, tls=None, relay=None):
        """tls: (certificate path, key path) to listen on tls:127.0.0.1:tls_port
        too; relay: "sip:IP:PORT" to relay calls to (a carrier)."""
        self.kamailio = require_tool("kamailio")
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.defines = []
        if tls:
            self.defines += ["WITH_TLS", 'TLS_CERT="%s"' % tls[0], 'TLS_KEY="%s"' % tls[1]]
        if relay:
            self.defines.append('RELAY_URI="%s"' % relay)
        if max_expires is not None:
            self.defines.append("MAX_EXPIRES=%d" % max_expires)
        if min_expires is not None:
            self.defines.append("MIN_EXPIRES=%d" % min_expires)
        if algorithm is not None:
            # A string define needs its quotes: -A 'ALGORITHM="SHA-256"' (the
            # unquoted form in registrar.cfg's header is a parse error).
            self.defines.append('ALGORITHM="%s"' % algorithm)
        self.cfg = os.path.join(KAMAILIO_CFG_DIR, cfg)
        self.dir = workdir or scratch_dir(label)
        self.log_path = os.path.join(self.dir, "kamailio.log")
        self.proc = None
        self.reader = None
        self._old = []  # lines of earlier runs (restart on the same port)
        self.paused = False

    def command(self):
        args = [self.kamailio, "-f", self.cfg, "-l", "udp:127.0.0.1:%d" % self.port,
                "-P", os.path.join(self.dir, "kamailio.pid"), "-w", self.dir, "-Y", self.dir,
                "-E", "-DD"]
        if self.tls_port:
            args += ["-l", "tls:127.0.0.1:%d" % self.tls_port]
        for d in self.defines:
            args += ["-A", d]
        return args

    def start(self, timeout=10.0):
        if self.reader:
            self._old += self.reader.snapshot()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=self.dir, start_new_session=True)
        self.reader = _LineReader(self.proc.stderr, self.log_path)
        self.reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail("kamailio exited with %s during start-up\n%s"
                     % (self.proc.returncode, self.log_tail()))
            if options_status(self.port, "udp", 0.3) == 200:
                return self
            time.sleep(0.05)
        self.kill()
        fail("kamailio did not answer OPTIONS on udp:127.0.0.1:%d\n%s"
             % (self.port, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig):
        # The group is the session this object started (start_new_session).
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def pause(self):
        """SIGSTOP every Kamailio process: requests stay unanswered."""
        self._signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._signal_group(signal.SIGCONT)
        self.paused = False

    def kill(self):
        """SIGKILL the whole group (also works while paused)."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.paused = False
        if self.reader:
            self.reader.join(timeout=2)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            if self.reader:
                self.reader.join(timeout=2)
            return
        if self.paused:
            self.kill()
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # Children left over (there should be none) go with the group.
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.reader:
            self.reader.join(timeout=2)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is None and not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif exc_type is not None:
            sys.stderr.write("peers: kept %s\n" % self.dir)
        return False

    # -- what it saw

    def lines(self):
        return self._old + (self.reader.snapshot() if self.reader else [])

    def registers(self):
        """Every REGISTER it logged, oldest first: dicts with t (arrival,
        time.time()), ci, cseq (int), from_, contact, expires (int or None),
        privacy, ua, auth, src."""
        out = []
        for t, line in self.lines():
            m = REG_LINE.search(line)
            if not m:
                continue
            d = m.groupdict()
            d["t"] = t
            d["cseq"] = _int_or_none(d["cseq"])
            d["expires"] = _int_or_none(d["expires"])
            out.append(d)
        return out

    def saved(self):
        """Bindings saved (WITH_TLS): dicts with t, aor, proto, socket, src."""
        return [dict(SAVED_LINE.search(line).groupdict(), t=t)
                for t, line in self.lines() if SAVED_LINE.search(line)]

    def relayed(self):
        """Requests relayed to RELAY_URI: dicts with t, method, ci, proto, src."""
        return [dict(RELAY_LINE.search(line).groupdict(), t=t)
                for t, line in self.lines() if RELAY_LINE.search(line)]

    def authfails(self):
        return [dict(AUTHFAIL_LINE.search(line).groupdict(), t=t)
                for t, line in self.lines() if AUTHFAIL_LINE.search(line)]

    def wait_for(self, predicate, timeout, what="a REGISTER at the registrar"):
        """Wait until predicate(registers()) is truthy; its value."""
        return wait_until(lambda: predicate(self.registers()), timeout,
                          what="%s\n%s" % (what, self.log_tail()))

    def log_tail(self, n=30):
        text = [line for _, line in self.lines()][-n:]
        return "---- kamailio on %d (last %d lines) ----\n%s\n----" % (
            self.port, len(text), "\n".join(text))


def regs_from(regs, user):
    """REGISTERs whose From user is `user`."""
    return [r for r in regs if r["from_"].startswith("sip:%s@" % user)]


def attempts(regs, gap=1.0):
    """Group REGISTERs into attempts: a REGISTER that comes more than `gap`
    seconds after the previous one starts a new attempt (the answer to a
    challenge follows its REGISTER within milliseconds)."""
    groups = []
    for r in regs:
        if not groups or r["t"] - groups[-1][-1]["t"] > gap:
            groups.append([r])
        else:
            groups[-1].append(r)
    return groups


class UdpPeer:
    """A UDP socket on 127.0.0.1 served by a thread that hands each datagram
    to on_datagram(data, addr); a context manager that stops it."""

    def __init__(self, port=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port or 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while self.running:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                break
            self.on_datagram(data, addr)

    def on_datagram(self, data, addr):
        raise NotImplementedError

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class SilentRegistrar(UdpPeer):
    """A UDP socket on 127.0.0.1 that reads every datagram and answers none."""

    def __init__(self, port=None):
        self.packets = []  # (t, bytes)
        super().__init__(port)

    def on_datagram(self, data, addr):
        with self.lock:
            self.packets.append((time.time(), data))

    def requests(self):
        """Each datagram parsed: dicts with t, method, cseq, ci, branch, expires."""
        with self.lock:
            packets = list(self.packets)
        out = []
        for t, data in packets:
            text = data.decode("utf-8", "replace")
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            d = {"t": t, "method": head[0].split(" ", 1)[0], "cseq": None, "ci": None,
                 "branch": None, "expires": None, "text": text}
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                if name == "cseq":
                    d["cseq"] = _int_or_none(value.split()[0])
                elif name in ("call-id", "i"):
                    d["ci"] = value
                elif name in ("via", "v") and d["branch"] is None:
                    m = re.search(r"branch=([^;,\s]+)", value)
                    d["branch"] = m.group(1) if m else None
                elif name == "expires":
                    d["expires"] = _int_or_none(value)
            out.append(d)
        return out


class Sipp:
    """SIPp running a scenario from test/integration/scenarios in the
    background (UAS when no remote is given)."""

    def __init__(self, scenario, workdir=None, port=None, remote=None, extra=(), ip="127.0.0.1"):
        self.sipp = require_tool("sipp")
        self.ip = ip
        self.port = port or free_port()
        if workdir is None:
            self.dir = scratch_dir("sipp-" + os.path.splitext(scenario)[0])
        else:
            self.dir = os.path.join(workdir, "sipp")
            os.makedirs(self.dir, exist_ok=True)
        self.out_path = os.path.join(self.dir, "sipp.out")
        self.args = [self.sipp]
        if remote:
            self.args.append(remote)
        self.args += ["-sf", os.path.join(SCENARIOS, scenario), "-p", str(self.port),
                      "-i", ip, "-m", "1", "-timeout", "30", "-timeout_error",
                      "-nostdin", "-trace_err", "-trace_msg"] + list(extra)
        self.proc = None

    def start(self):
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        # SIPp binds its socket quickly; wait until the port is taken.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((self.ip, self.port))
            except OSError:
                return self
            finally:
                s.close()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        fail("sipp did not bind udp:%s:%d\n%s" % (self.ip, self.port, self.report()))

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if getattr(self, "_out", None):
            self._out.close()
            self._out = None

    def report(self):
        text = ""
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(("_errors.log", "_messages.log")) or name == "sipp.out":
                with open(os.path.join(self.dir, name), "rb") as f:
                    text += "---- %s ----\n%s\n" % (
                        name, f.read()[-4000:].decode("utf-8", "replace"))
        return text

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.kill()
        if exc_type is None and not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif exc_type is not None:
            sys.stderr.write("peers: kept %s\n" % self.dir)
        return False


# ---- Policies -----------------------------------------------------------------


class Lua:
    """A raw Lua expression for lua_value()."""

    def __init__(self, code):
        self.code = code


def lua_value(v):
    if isinstance(v, Lua):
        return v.code
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(v, (list, tuple)):
        return "{ %s }" % ", ".join(lua_value(x) for x in v)
    raise TypeError(v)


def lua_fields(fields):
    return ", ".join("%s = %s" % (k, lua_value(v)) for k, v in fields.items()
                     if v is not None)


def switch_policy(**sip):
    """switch { sip = {...} } with resend_interval = 100 unless given."""
    sip.setdefault("resend_interval", 100)
    return "switch { sip = { %s } }\n" % lua_fields(sip)


def registration(name, port, username="100", password=None, server="127.0.0.1", **fields):
    """A registration entry; the password defaults to what registrar.cfg
    expects ("<auth user>-secret")."""
    if password is None:
        password = "%s-secret" % (fields.get("auth_username") or username)
    f = {"server": server, "port": port, "username": username, "password": password}
    f.update(fields)
    return 'registration "%s" { %s }\n' % (name, lua_fields(f))


def registration_gateway(name, registration_name, address):
    return ('routing_gateway "%s" { type = "registration", registration = "%s", '
            'address = "%s" }\n' % (name, registration_name, address))


# ---- The live objects through moonctl -------------------------------------------

REG_FIELDS = ("state", "status", "expires", "failures", "contact", "next_refresh",
              "public_address", "last_error", "call_id", "cseq", "password")

_REG_CHUNK = """
local r = registrations[%s]
if r == nil then return "absent" end
local out = {}
for _, k in ipairs{%s} do
  local v = r[k]
  out[#out + 1] = k .. "\\t" .. type(v) .. "\\t" .. tostring(v)
end
return table.concat(out, "\\n")
"""


def reg(sw, name):
    """registrations[name] as a dict (None when absent). Numbers as numbers,
    nil as None."""
    chunk = _REG_CHUNK % (lua_value(name), ", ".join(lua_value(k) for k in REG_FIELDS))
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "moonctl reading registrations[%r]: rc %d, %s" % (name, rc, err))
    out = out.rstrip("\n")
    if out == "absent":
        return None
    d = {}
    for line in out.split("\n"):
        k, typ, value = line.split("\t", 2)
        if typ == "nil":
            d[k] = None
        elif typ == "number":
            d[k] = float(value) if "." in value or "e" in value else int(value)
        elif typ == "boolean":
            d[k] = value == "true"
        else:
            d[k] = value
    return d


def ctl_value(sw, chunk):
    """The single line a chunk prints; fails on a Lua error."""
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "moonctl -e %r: rc %d, %s" % (chunk, rc, err))
    return out.rstrip("\n")


def gateway_online(sw, name):
    value = ctl_value(sw, "return gateways[%s].online" % lua_value(name))
    check(value in ("true", "false"), "gateways[%r].online printed %r" % (name, value))
    return value == "true"


def wait_state(sw, name, states, timeout, extra=None):
    """Wait until registrations[name].state is one of `states` (a string or a
    tuple) and extra(reg) is truthy; the reg dict."""
    if isinstance(states, str):
        states = (states,)
    last = {}

    def probe():
        r = reg(sw, name)
        last["r"] = r
        return r if r and r["state"] in states and (extra is None or extra(r)) else None

    r = wait_until(probe, timeout)
    if not r:
        fail("registration %r did not reach %s within %.1f s: %r\n%s"
             % (name, "/".join(states), timeout, last.get("r"), sw.log_tail()))
    return r
