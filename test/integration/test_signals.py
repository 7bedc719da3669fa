"""SIGTERM and SIGINT: a graceful exit with status 0 within 5 s, also while a
REPL chunk sleeps; SIGHUP does not end the switch."""

import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests, scratch_dir  # noqa: E402

GRACE = 5.0


def stop_within(sw, sig, what):
    t0 = time.monotonic()
    sw.send_signal(sig)
    code = sw.wait(GRACE)
    dt = time.monotonic() - t0
    check(code is not None, "%s: still running %.0f s after the signal\n%s"
          % (what, GRACE, sw.log_tail()))
    check_eq(code, 0, "%s: exit status" % what)
    return dt


def idle_exit(sig):
    name = signal.Signals(sig).name
    with Switch() as sw:
        check_eq(sw.options(), 200, "OPTIONS before %s" % name)
        dt = stop_within(sw, sig, name)
        print("  %s: exit 0 after %.3f s" % (name, dt))
        # The process is gone: nothing answers on its port any more.
        check_eq(sw.options("udp", timeout=0.3), None, "OPTIONS after %s" % name)


def busy_exit(sig):
    name = signal.Signals(sig).name
    with Switch() as sw:
        p = sw.ctl_popen('sleep(30) return "never"')
        try:
            time.sleep(0.3)
            check(p.poll() is None, "the sleep(30) chunk ended early")
            dt = stop_within(sw, sig, name + " with a sleeping chunk")
            print("  %s with a sleeping chunk: exit 0 after %.3f s" % (name, dt))
            # moonctl learns that the switch went away instead of hanging.
            try:
                out, err = p.communicate(timeout=5)
            except Exception:
                p.kill()
                p.communicate()
                raise
            check(p.returncode != 0, "moonctl exit %d after the switch stopped (out %r)"
                  % (p.returncode, out))
            check(b"never" not in out, "the interrupted chunk printed its result")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_sigterm():
    idle_exit(signal.SIGTERM)


def test_sigint():
    idle_exit(signal.SIGINT)


def test_sigterm_while_chunk_sleeps():
    busy_exit(signal.SIGTERM)


def test_sigint_while_chunk_sleeps():
    busy_exit(signal.SIGINT)


def test_sigterm_with_open_tcp_connection():
    import socket
    with Switch() as sw:
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=2)
        try:
            s.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n")  # half a request
            time.sleep(0.1)
            stop_within(sw, signal.SIGTERM, "SIGTERM with an open TCP connection")
        finally:
            s.close()


def test_sigterm_flushes_store():
    # What a chunk wrote is still there after SIGTERM and a restart on the
    # same data directory.
    top = scratch_dir("store")
    data = os.path.join(top, "data")
    with Switch(label="store-first", data_dir=data) as sw:
        rc, out, err = sw.ctl('kv.put("persist", "yes") kv.put("n", "42")')
        check_eq(rc, 0, "kv.put (stderr %r)" % err)
        stop_within(sw, signal.SIGTERM, "SIGTERM after kv.put")
    with Switch(label="store-second", data_dir=data) as sw:
        rc, out, err = sw.ctl('return kv.get("persist"), kv.get("n")')
        check_eq((rc, out), (0, "yes\n42\n"), "kv after a restart (stderr %r)" % err)
    shutil.rmtree(top, ignore_errors=True)


def test_sighup_keeps_running():
    with Switch() as sw:
        sw.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        check(sw.alive(), "SIGHUP ended the switch")
        check_eq(sw.options(), 200, "OPTIONS after SIGHUP")
        stop_within(sw, signal.SIGTERM, "SIGTERM after SIGHUP")


if __name__ == "__main__":
    run_tests(globals())
