"""Shared helpers for moonswitch's integration tests.

Each test file imports this module (it sits beside them), starts one or more
switches with `Switch`, drives them over SIP (raw sockets, sipsak, SIPp) and
over the control socket (moonctl), and ends with `run_tests(globals())`.

Environment (set by ctest, see test/CMakeLists.txt):
  MOONSWITCH, MOONCTL  absolute paths of the binaries
  MOON_SOURCE_DIR      the repository root
  MOON_TEST_TMP        a scratch directory
  MOON_TEST_KEEP=1     keep each test's directory (default: removed on success)

Python 3 standard library only.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def _env_path(name, default):
    value = os.environ.get(name)
    return value if value else default


SOURCE_DIR = _env_path("MOON_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
MOONSWITCH = _env_path("MOONSWITCH", os.path.join(SOURCE_DIR, "build", "moonswitch"))
MOONCTL = _env_path("MOONCTL", os.path.join(SOURCE_DIR, "build", "moonctl"))
TEST_TMP = _env_path("MOON_TEST_TMP", os.path.join(SOURCE_DIR, "build", "test", "tmp"))
KEEP = os.environ.get("MOON_TEST_KEEP") == "1"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_eq(got, want, what="value"):
    if got != want:
        fail("%s: expected %r, got %r" % (what, want, got))


# ---- Ports ----------------------------------------------------------------

_used_ports = set()


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(200):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            if port in _used_ports:
                continue
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                t.close()
            _used_ports.add(port)
            return port
        finally:
            u.close()
    fail("no port free for both UDP and TCP on 127.0.0.1")


# ---- SIP messages -----------------------------------------------------------


def _token():
    return uuid.uuid4().hex[:16]


def sip_options(port, transport="udp", local_port=5099, host="127.0.0.1", extra_headers=(),
                method="OPTIONS", body=b"", max_forwards=70):
    """A well-formed out-of-dialog request (OPTIONS by default) as bytes."""
    if isinstance(body, str):
        body = body.encode()
    tr = transport.upper()
    lines = [
        "%s sip:%s:%d SIP/2.0" % (method, host, port),
        "Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-%s;rport" % (tr, local_port, _token()),
        "Max-Forwards: %d" % max_forwards,
        "From: <sip:probe@127.0.0.1:%d>;tag=%s" % (local_port, _token()),
        "To: <sip:%s:%d>" % (host, port),
        "Call-ID: %s@127.0.0.1" % _token(),
        "CSeq: 1 %s" % method,
        "Contact: <sip:probe@127.0.0.1:%d;transport=%s>" % (local_port, transport.lower()),
        "User-Agent: moonswitch-integration-test",
    ]
    lines.extend(extra_headers)
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_response(data):
    """(status, {lowercase header name: [values]}, body) of a SIP response, or None."""
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0"):
        return None
    try:
        status = int(parts[1])
    except ValueError:
        return None
    headers = {}
    compact = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length",
               "m": "contact", "c": "content-type", "k": "supported"}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        name = compact.get(name, name)
        headers.setdefault(name, []).append(value.strip())
    return status, headers, body


def status_of(data):
    parsed = parse_response(data)
    return parsed[0] if parsed else None


def _message_complete(buf):
    """Length of the first complete SIP message in buf (stream framing), or 0."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"content-length", b"l"):
            try:
                length = int(value.strip())
            except ValueError:
                length = 0
    total = end + 4 + length
    return total if len(buf) >= total else 0


def udp_read_reply(s, timeout, accept):
    """The first datagram on UDP socket s whose status (None when it is no
    response) `accept` takes, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            reply, _ = s.recvfrom(65535)
        except (socket.timeout, ConnectionRefusedError):
            return None
        if accept(status_of(reply)):
            return reply


def udp_exchange(port, data, timeout=1.0, want_final=True):
    """Send one datagram to 127.0.0.1:port; the first (final) reply or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.sendto(data, ("127.0.0.1", port))
        return udp_read_reply(
            s, timeout, lambda st: not (want_final and st is not None and st < 200))
    finally:
        s.close()


def tcp_exchange(port, data, timeout=1.0, want_final=True):
    """Connect, send data, return the first (final) reply or None."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the switch may drop the connection mid-send; read what came
        return tcp_read_reply(s, timeout, want_final)
    finally:
        s.close()


def tcp_read_reply(s, timeout, want_final=True, buf=None):
    """Read one (final) SIP message from a connected socket, or None.

    `buf` (a bytearray) carries bytes read past the message between calls."""
    if buf is None:
        buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        n = _message_complete(bytes(buf))
        while n:
            msg = bytes(buf[:n])
            del buf[:n]
            st = status_of(msg)
            if not (want_final and st is not None and st < 200):
                return msg
            n = _message_complete(bytes(buf))
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            return None
        if not chunk:
            return None
        buf.extend(chunk)


def options_status(port, transport="udp", timeout=2.0):
    """Send a fresh OPTIONS; the final status code or None."""
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            msg = sip_options(port, "udp", s.getsockname()[1])
            s.sendto(msg, ("127.0.0.1", port))
            reply = udp_read_reply(s, timeout, lambda st: st is not None and st >= 200)
            return status_of(reply) if reply is not None else None
        finally:
            s.close()
    if transport == "tcp":
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError:
            return None
        try:
            s.sendall(sip_options(port, "tcp", s.getsockname()[1]))
            return status_of(tcp_read_reply(s, timeout))
        except OSError:
            return None
        finally:
            s.close()
    raise ValueError("transport must be udp or tcp")


# ---- Policies and the check mode ----------------------------------------------


def write_policies(directory, files=None):
    """Fill `directory` with the policy files: {name: text}, or the defaults."""
    os.makedirs(directory, exist_ok=True)
    if files is None:
        src = os.path.join(SOURCE_DIR, "policies")
        for name in sorted(os.listdir(src)):
            if name.endswith(".lua"):
                shutil.copy(os.path.join(src, name), os.path.join(directory, name))
    else:
        for name, text in files.items():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    return directory


def scratch_dir(label):
    os.makedirs(TEST_TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix="%s-" % label, dir=TEST_TMP)


def run_check(policy_files, label="check"):
    """Run `moonswitch --check --policies DIR` on a fresh copy of the files;
    (rc, stdout + stderr, the policy dir, removed afterwards unless KEEP)."""
    d = scratch_dir(label)
    pol = write_policies(os.path.join(d, "policies"), policy_files)
    try:
        p = subprocess.run([MOONSWITCH, "--check", "--policies", pol], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30, cwd=d)
    finally:
        if not KEEP:
            shutil.rmtree(d, ignore_errors=True)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace"), pol


def moonctl(sock, chunk, timeout=30, stdin=None):
    """Run moonctl (with -e CHUNK unless chunk is None); (rc, stdout, stderr)."""
    args = [MOONCTL, "--control", sock]
    if chunk is not None:
        args += ["-e", chunk]
    p = subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---- The switch -------------------------------------------------------------


class Switch:
    """A moonswitch process on a free port, with its own policies and data.

        with Switch() as sw:                      # the default policies
            assert sw.options() == 200
        with Switch({"10-x.lua": "..."}) as sw:   # given policy files
            rc, out, err = sw.ctl("return 1")
    """

    def __init__(self, policies=None, label=None, port=None, log_level="debug",
                 extra_args=(), start_timeout=START_TIMEOUT, data_dir=None):
        """data_dir: reuse another switch's data directory (say, to restart
        on the same LMDB); by default each switch gets a fresh one."""
        self.label = label or _caller_test_name()
        self.dir = scratch_dir(self.label)
        self.policy_dir = write_policies(os.path.join(self.dir, "policies"), policies)
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.control = os.path.join(self.data_dir, "control.sock")
        if len(self.control.encode()) > 100:  # sun_path holds 108 bytes
            self.sock_dir = tempfile.mkdtemp(prefix="moon-")
            self.control = os.path.join(self.sock_dir, "control.sock")
        else:
            self.sock_dir = None
        self.log_path = os.path.join(self.dir, "switch.log")
        self.port = port or free_port()
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.exit_code = None
        self._logf = None

    # -- lifetime

    def command(self):
        return [MOONSWITCH, "--policies", self.policy_dir, "--data", self.data_dir,
                "--listen", "udp:127.0.0.1:%d" % self.port,
                "--listen", "tcp:127.0.0.1:%d" % self.port,
                "--control", self.control, "--log-level", self.log_level] + self.extra_args

    def start(self):
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=self._logf,
                                     cwd=self.dir)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._close_log()
                fail("moonswitch exited with %s during start-up\n%s" % (code, self.log_tail()))
            if os.path.exists(self.control) and options_status(self.port, "udp", 0.3) == 200:
                return self
            time.sleep(0.05)
        self._kill()
        fail("moonswitch did not answer OPTIONS on udp:127.0.0.1:%d and its control socket "
             "within %.0f s\n%s" % (self.port, self.start_timeout, self.log_tail()))

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self._cleanup(ok=False)
            raise

    def __exit__(self, exc_type, exc, tb):
        ok = exc_type is None
        try:
            if self.alive():
                code = self.stop()
                if ok and code != 0:
                    fail("moonswitch exited with %s on SIGTERM\n%s" % (code, self.log_tail()))
            if ok:
                report = sanitizer_report(self.log())
                if report:
                    fail("sanitizer report in the switch log:\n%s" % report)
        except BaseException:
            ok = False
            raise
        finally:
            self._cleanup(ok=ok)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """The exit code, or None if still running after timeout seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=None, timeout=STOP_TIMEOUT):
        """Signal the switch and wait for it; its exit code. Fails (after a
        SIGKILL) if it does not exit within timeout seconds."""
        if sig is None:
            sig = signal.SIGTERM
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                fail("moonswitch did not exit within %.0f s of signal %d\n%s"
                     % (timeout, sig, self.log_tail()))
        self.exit_code = self.proc.returncode
        self._close_log()
        return self.exit_code

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def _close_log(self):
        if self._logf:
            self._logf.close()
            self._logf = None

    def _cleanup(self, ok):
        self._kill()
        if self.sock_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        if ok and not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif not ok:
            sys.stderr.write("harness: kept %s\n" % self.dir)

    # -- observing

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        text = self.log().splitlines()[-lines:]
        return "---- switch log (last %d lines) ----\n%s\n----" % (len(text), "\n".join(text))

    def wait_log(self, needle, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.05)
        return False

    # -- talking to it

    def ctl(self, chunk, timeout=30):
        return moonctl(self.control, chunk, timeout=timeout)

    def ctl_popen(self, chunk):
        return subprocess.Popen([MOONCTL, "--control", self.control, "-e", chunk],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def options(self, transport="udp", timeout=2.0):
        return options_status(self.port, transport, timeout)

    def send_raw_udp(self, data, timeout=1.0):
        return udp_exchange(self.port, data, timeout)

    def send_raw_tcp(self, data, timeout=1.0):
        return tcp_exchange(self.port, data, timeout)

    def write_policy(self, name, text):
        with open(os.path.join(self.policy_dir, name), "w") as f:
            f.write(text)

    def remove_policy(self, name):
        os.unlink(os.path.join(self.policy_dir, name))

    def request(self, transport="udp", timeout=2.0, **kw):
        """Send sip_options(**kw) (fresh tokens); the reply bytes or None."""
        if transport == "udp":
            return self.send_raw_udp(sip_options(self.port, "udp", **kw), timeout)
        return self.send_raw_tcp(sip_options(self.port, "tcp", **kw), timeout)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_report(text):
    """The first sanitizer report in a log (with some lines after it), or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(mark in line for mark in SANITIZER_MARKS):
            return "\n".join(lines[i:i + 40])
    return None


def _caller_test_name():
    for frame in traceback.extract_stack()[::-1]:
        if frame.name.startswith("test_"):
            return frame.name
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return name if name and not name.startswith("-") else "switch"


# ---- Running a test file ----------------------------------------------------------


def run_tests(namespace, argv=None):
    """Run every test_* function in namespace (definition order), or those
    named on the command line; print each result and its duration; exit 1
    if any failed."""
    argv = sys.argv[1:] if argv is None else argv
    tests = [(name, fn) for name, fn in namespace.items()
             if name.startswith("test_") and callable(fn)]
    if argv:
        tests = [(n, f) for n, f in tests if n in argv]
    failed = []
    t_all = time.monotonic()
    for name, fn in tests:
        t0 = time.monotonic()
        sys.stdout.write("---- %s\n" % name)
        sys.stdout.flush()
        try:
            fn()
        except Exception:
            dt = time.monotonic() - t0
            failed.append(name)
            sys.stdout.write("FAIL %s (%.2f s)\n%s\n" % (name, dt, traceback.format_exc()))
        else:
            dt = time.monotonic() - t0
            sys.stdout.write("ok   %s (%.2f s)\n" % (name, dt))
        sys.stdout.flush()
    total = time.monotonic() - t_all
    if failed:
        print("%d of %d failed (%.1f s): %s" % (len(failed), len(tests), total,
                                               ", ".join(failed)))
        sys.exit(1)
    print("all %d passed (%.1f s)" % (len(tests), total))
    sys.exit(0)


def require_tool(name):
    path = shutil.which(name)
    check(path is not None, "%s is not installed" % name)
    return path


