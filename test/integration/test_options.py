"""OPTIONS and the answers to methods nobody serves, over UDP and TCP, with
sipsak, SIPp and raw sockets."""

import csv
import glob
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HERE, Switch, check, check_eq, free_port, parse_response,  # noqa: E402
                     require_tool, run_tests, sip_options, status_of,
                     tcp_read_reply)

SCENARIO = os.path.join(HERE, "scenarios", "options_uac.xml")


def test_sipsak_options():
    sipsak = require_tool("sipsak")
    with Switch() as sw:
        for transport in ("udp", "tcp"):
            args = [sipsak, "-s", "sip:127.0.0.1:%d" % sw.port, "-H", "127.0.0.1"]
            if transport == "tcp":
                args += ["-E", "tcp"]
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=30)
            out = p.stdout.decode("utf-8", "replace")
            check(p.returncode == 0, "sipsak over %s: exit %d\n%s\n%s"
                  % (transport, p.returncode, out, sw.log_tail()))


def test_sipp_options():
    sipp = require_tool("sipp")
    with Switch() as sw:
        work = os.path.join(sw.dir, "sipp")
        os.makedirs(work)
        stat_file = os.path.join(work, "stat.csv")
        args = [sipp, "127.0.0.1:%d" % sw.port, "-sf", SCENARIO, "-m", "20", "-l", "5",
                "-r", "20", "-timeout", "20", "-timeout_error", "-p", str(free_port()),
                "-i", "127.0.0.1", "-nostdin", "-trace_err", "-trace_stat", "-stf", stat_file,
                "-fd", "1"]
        p = subprocess.run(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        errs = ""
        for path in glob.glob(os.path.join(work, "*_errors.log")):
            with open(path) as f:
                errs += f.read()
        check(p.returncode == 0, "sipp exit %d\n%s\n%s\n%s"
              % (p.returncode, out[-3000:], errs[-3000:], sw.log_tail()))
        with open(stat_file, newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        check(len(rows) >= 2, "sipp wrote no statistics rows")
        head, last = rows[0], rows[-1]
        ok = int(last[head.index("SuccessfulCall(C)")])
        failed = int(last[head.index("FailedCall(C)")])
        check_eq((ok, failed), (20, 0), "SIPp successful and failed calls")


def test_options_udp_headers():
    with Switch() as sw:
        reply = sw.request("udp")
        check(reply is not None, "no reply to OPTIONS over UDP")
        status, headers, _ = parse_response(reply)
        check_eq(status, 200, "OPTIONS over UDP")
        allow = ", ".join(headers.get("allow", []))
        for method in ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"):
            check(method in allow, "Allow lacks %s: %r" % (method, allow))
        check("accept" in headers, "200 to OPTIONS has no Accept header: %r" % reply)
        check("application/sdp" in ", ".join(headers["accept"]),
              "Accept does not list application/sdp: %r" % headers["accept"])
        # The reply matches the request's transaction.
        check(headers.get("cseq") == ["1 OPTIONS"], "CSeq: %r" % headers.get("cseq"))
        check("to" in headers and "tag=" in headers["to"][0], "To has no tag: %r"
              % headers.get("to"))


def test_options_tcp():
    with Switch() as sw:
        check_eq(sw.options("tcp"), 200, "OPTIONS over TCP")
        reply = sw.request("tcp")
        check(reply is not None, "no reply to OPTIONS over TCP")
        status, headers, _ = parse_response(reply)
        check_eq(status, 200, "OPTIONS over TCP")
        check("allow" in headers and "accept" in headers,
              "200 over TCP lacks Allow or Accept: %r" % reply)
        # Several requests down one connection are each answered.
        s = socket.create_connection(("127.0.0.1", sw.port), timeout=2)
        try:
            buf = bytearray()
            for i in range(3):
                s.sendall(sip_options(sw.port, "tcp", s.getsockname()[1]))
                reply = tcp_read_reply(s, 2, buf=buf)
                check_eq(status_of(reply), 200, "OPTIONS %d on one TCP connection" % (i + 1))
        finally:
            s.close()


def test_unknown_method_501():
    with Switch() as sw:
        for transport in ("udp", "tcp"):
            reply = sw.request(transport, method="FOO")
            check(reply is not None, "no reply to FOO over %s" % transport)
            status, headers, _ = parse_response(reply)
            check_eq(status, 501, "FOO over %s" % transport)
            check("allow" in headers, "501 has no Allow header")


def test_message_405():
    with Switch() as sw:
        for transport in ("udp", "tcp"):
            reply = sw.request(transport, method="MESSAGE",
                               extra_headers=["Content-Type: text/plain"], body="hello")
            check(reply is not None, "no reply to MESSAGE over %s" % transport)
            status, headers, _ = parse_response(reply)
            check_eq(status, 405, "MESSAGE over %s" % transport)
            check("allow" in headers, "405 has no Allow header")


if __name__ == "__main__":
    run_tests(globals())
