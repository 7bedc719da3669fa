"""SIP client transactions from Lua: sip.request, tx:wait/cancel/on_provisional,
tx.state, response objects, misuse errors, the pending cap, garbage
collection and reload, driven through moonctl -e against Kamailio
(test/kamailio/registrar.cfg answers OPTIONS 200), SIPp UAS scenarios
(scenarios/uas_*.xml) and a UDP socket that never answers.

Every switch runs with resend_interval = 100 (T1), so nta's own timeout
(64 * T1) is 6.4 s."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MOONCTL, Switch, check, check_eq, run_tests)  # noqa: E402
from peers import Kamailio, SilentRegistrar, Sipp, switch_policy  # noqa: E402

POLICY = {"00-switch.lua": switch_policy(resend_interval=100)}


def lua(sw, chunk, timeout=60):
    """Run a chunk; its printed values as a list of lines. Fails on a Lua error."""
    rc, out, err = sw.ctl(chunk, timeout=timeout)
    check(rc == 0, "moonctl -e failed (rc %d): %s\nchunk: %s\n%s"
          % (rc, err.strip(), chunk, sw.log_tail(20)))
    return out.rstrip("\n").split("\n") if out else []


def lua_error(sw, chunk):
    """Run a chunk that must raise; its error text."""
    rc, out, err = sw.ctl(chunk)
    check(rc == 1, "chunk did not raise (rc %d, stdout %r): %s" % (rc, out, chunk))
    return err.strip()


def sipp_ok(uas, timeout=10):
    """The SIPp UAS ended its one call successfully."""
    rc = uas.wait(timeout)
    check(rc == 0, "SIPp UAS exit code %r (0 = its scenario passed)\n%s" % (rc, uas.report()))


def uri(port, user=None):
    return "sip:%s127.0.0.1:%d" % (user + "@" if user else "", port)


# ---- Against Kamailio ---------------------------------------------------------------


def test_repl_options_kamailio():
    """The one-liner from the issue prints 200, with moonctl itself."""
    with Kamailio() as k, Switch(POLICY) as sw:
        chunk = 'return sip.request{method="OPTIONS", uri="sip:127.0.0.1:%d"}:wait().status' % k.port
        p = subprocess.run([MOONCTL, "--control", sw.control, "-e", chunk],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        check_eq((p.returncode, p.stdout.decode(), p.stderr.decode()), (0, "200\n", ""),
                 "moonctl -e '%s'" % chunk)


def test_kamailio_response_object():
    with Kamailio() as k, Switch(POLICY) as sw:
        out = lua(sw, """
            local tx = sip.request{ method = "OPTIONS", uri = "%s",
                                    headers = { ["X-Probe"] = "1" }, timeout = 5 }
            local before, status_before = tx.state, tx.status
            local res = tx:wait()
            local again = tx:wait()   -- a finished transaction answers at once
            return before, tostring(status_before), res.status, res.reason,
                   res:header("Server"), res:header("server") == res:header("SERVER"),
                   tx.state, tx.status, again.status, tostring(res),
                   res.to.tag ~= nil, res.from.user, res.cseq == again.cseq,
                   type(res.call_id), #res.call_id > 8
        """ % uri(k.port))
        check_eq(out[:5], ["calling", "nil", "200", "OK", out[4]], "state, status, reason")
        check(out[4].startswith("kamailio"), "Server header: %r" % out[4])
        check_eq(out[5:], ["true", "completed", "200", "200", "SIP response 200 OK", "true",
                           "moonswitch", "true", "string", "true"], "the response object")


def test_thousand_concurrent():
    """1,000 sip.request calls from one chunk, all in flight, all answered."""
    with Kamailio() as k, Switch(POLICY) as sw:
        t0 = time.monotonic()
        out = lua(sw, """
            local txs = {}
            for i = 1, 1000 do
              txs[i] = sip.request{ method = "OPTIONS", uri = "%s" }
            end
            local ok, other = 0, {}
            for i = 1, 1000 do
              local st = txs[i]:wait().status
              if st == 200 then ok = ok + 1 else other[#other + 1] = st end
            end
            return ok, "other: " .. table.concat(other, ",")
        """ % uri(k.port), timeout=90)
        dt = time.monotonic() - t0
        check_eq(out, ["1000", "other: "], "1,000 concurrent OPTIONS answered 200 (in %.2f s)" % dt)
        sys.stdout.write("  1,000 concurrent OPTIONS in %.3f s\n" % dt)
        # Nothing is left pending: the cap is not held by finished transactions.
        check_eq(lua(sw, "return sip.request{method='OPTIONS', uri='%s'}:wait().status"
                     % uri(k.port)), ["200"], "a request after the thousand")
        check_eq(sw.options(), 200, "the switch still answers OPTIONS")


# ---- Against SIPp UAS scenarios -----------------------------------------------------


def test_sipp_200_compact_headers():
    """Header access by full and compact name, any case; all values of a
    repeated header; parsed From/To/Contact; the body. The UAS checks the
    request's own headers (Via, Max-Forwards, From tag, To, CSeq, Contact,
    and the user header given)."""
    with Sipp("uas_options_200.xml") as uas, Switch(POLICY) as sw:
        out = lua(sw, """
            local r = sip.request{ method = "OPTIONS", uri = "%s",
                                   headers = { ["X-Probe"] = "lua-1" } }:wait()
            local c, t, f = r.contact, r.to, r.from
            local multi = r:headers("X-MULTI")
            return r.status, r.reason,
                   r:header("Via") == r:header("v"), r:header("V") == r:header("via"),
                   r:header("From") == r:header("f"), r:header("To") == r:header("t"),
                   r:header("Call-ID") == r:header("i"), r:header("i") == r.call_id,
                   r:header("Contact") == r:header("m"),
                   r:header("Content-Type"), r:header("c"),
                   r:header("Content-Length"), r:header("l"),
                   #multi, multi[1], multi[2], r:header("x-multi"),
                   #r:headers("Via"), #r:headers("X-None"), tostring(r:header("X-None")),
                   r.body == "compact body\\r\\n", #r.body,
                   c.user, c.host, c.port, c.params.transport, c.params.foo,
                   tostring(c.params.lr), c.scheme,
                   t.user, t.tag ~= nil and t.tag:match("SIPpTag") ~= nil,
                   f.user, f.tag ~= nil
        """ % uri(uas.port, "alice"))
        want = ["200", "Fine Thanks",
                "true", "true", "true", "true", "true", "true", "true",
                "text/plain", "text/plain", "14", "14",
                "2", "one", "two", "one",
                "1", "0", "nil",
                "true", "14",
                "uas", "127.0.0.1", str(uas.port), "udp", "bar", "true", "sip",
                "alice", "true",
                "moonswitch", "true"]
        check_eq(out, want, "the 200 in compact form, read through the message object")
        sipp_ok(uas)


def test_sipp_404():
    with Sipp("uas_options_404.xml") as uas, Switch(POLICY) as sw:
        out = lua(sw, """
            local tx = sip.request{ method = "OPTIONS", uri = "%s" }
            local r = tx:wait()
            return r.status, r.reason, tx.state, tx.status
        """ % uri(uas.port))
        check_eq(out, ["404", "Nobody Here", "completed", "404"], "a 404 is an answer, not an error")
        sipp_ok(uas)


def test_provisional_then_final():
    """MESSAGE with a body: 180, then 200 600 ms later. on_provisional sees the
    180 (in its own task) and tx.state goes calling -> proceeding -> completed."""
    with Sipp("uas_message_180_200.xml") as uas, Switch(POLICY) as sw:
        t0 = time.monotonic()
        out = lua(sw, """
            local tx = sip.request{ method = "MESSAGE", uri = "%s", body = "hello from lua",
                                    headers = { ["Content-Type"] = "text/plain" } }
            local seen, states = {}, { tx.state }
            tx:on_provisional(function(res)
              seen[#seen + 1] = res.status .. " " .. res.reason .. " " .. tx.state
            end)
            for _ = 1, 300 do
              if tx.state ~= "calling" then break end
              sleep(0.01)
            end
            states[#states + 1] = tx.state
            states[#states + 1] = tostring(tx.status)
            local r = tx:wait()
            states[#states + 1] = tx.state
            return table.concat(states, ","), r.status, tx.status, #seen, unpack(seen)
        """ % uri(uas.port, "bob"))
        dt = time.monotonic() - t0
        check_eq(out[:3], ["calling,proceeding,nil,completed", "200", "200"],
                 "states and final")
        # SIPp answers each retransmitted MESSAGE with its 180 again: each
        # 180 that arrives is given to on_provisional.
        check(int(out[3]) >= 1 and out[4:] == ["180 Ringing proceeding"] * int(out[3]),
              "on_provisional saw %r" % out[3:])
        check(dt >= 0.5, "the final answer came after %.2f s; the UAS waits 600 ms" % dt)
        sipp_ok(uas)


def test_cancel():
    """An INVITE that rings: tx:cancel() sends CANCEL, the UAS answers it and
    487s the INVITE (which nta ACKs); wait() returns the 487."""
    with Sipp("uas_invite_cancel.xml") as uas, Switch(POLICY) as sw:
        out = lua(sw, """
            local sdp = "v=0\\r\\no=- 1 1 IN IP4 127.0.0.1\\r\\ns=-\\r\\nc=IN IP4 127.0.0.1\\r\\n"
                     .. "t=0 0\\r\\nm=audio 40000 RTP/AVP 0\\r\\n"
            local tx = sip.request{ method = "INVITE", uri = "%s", body = sdp }
            local rang = 0
            tx:on_provisional(function(res) if res.status == 180 then rang = rang + 1 end end)
            for _ = 1, 500 do
              if tx.state == "proceeding" then break end
              sleep(0.01)
            end
            local state = tx.state
            local sent = tx:cancel()
            local r = tx:wait()
            return state, rang, sent, r.status, r.reason, tx.state, tx:cancel()
        """ % uri(uas.port, "bob"))
        check_eq(out, ["proceeding", "1", "true", "487", "Request Terminated", "completed",
                       "false"], "INVITE, 180, cancel, 487")
        sipp_ok(uas)  # it got the CANCEL and the ACK of its 487


def test_invite_2xx_acked_and_hung_up():
    """An INVITE from sip.request is a probe: a 200 is ACKed and hung up
    (BYE) at once; wait() returns the 200 with its body."""
    with Sipp("uas_invite_200.xml") as uas, Switch(POLICY) as sw:
        out = lua(sw, """
            local r = sip.request{ method = "INVITE", uri = "%s",
                                   body = "v=0\\r\\n" }:wait()
            return r.status, r:header("Content-Type"), r.body:match("m=audio %%d+") or "no sdp"
        """ % uri(uas.port, "bob"))
        check_eq(out, ["200", "application/sdp", "m=audio 40002"], "the 200 to an INVITE")
        sipp_ok(uas)  # it got the ACK and the BYE


def test_cancel_misuse():
    """cancel() on a non-INVITE or a finished INVITE does nothing and says so."""
    with Kamailio() as k, Switch(POLICY) as sw:
        out = lua(sw, """
            local tx = sip.request{ method = "OPTIONS", uri = "%s" }
            local c1 = tx:cancel()
            return c1, tx:wait().status, tx:cancel()
        """ % uri(k.port))
        check_eq(out, ["false", "200", "false"], "cancel on OPTIONS")


# ---- Silence and network failures ------------------------------------------------


def test_timeout_408():
    """timeout = 1 against a peer that never answers: a local 408 after 1 s."""
    with SilentRegistrar() as silent, Switch(POLICY) as sw:
        t0 = time.monotonic()
        out = lua(sw, """
            local tx = sip.request{ method = "OPTIONS", uri = "%s", timeout = 1 }
            local r = tx:wait()
            return r.status, r.reason, tx.state, tx.status, tostring(r:header("Via")),
                   #r:headers("Via")
        """ % uri(silent.port))
        dt = time.monotonic() - t0
        check_eq(out[0], "408", "status on silence with timeout = 1")
        check("Timeout" in out[1], "reason: %r" % out[1])
        check_eq(out[2:], ["terminated", "408", "nil", "0"], "state, status, headers of a local 408")
        check(0.9 <= dt < 2.5, "timeout = 1 answered after %.2f s" % dt)
        check(len(silent.requests()) >= 2, "the silent peer saw %d datagrams (retransmissions "
              "expected with T1 = 100 ms)" % len(silent.requests()))
        # A fractional timeout.
        t0 = time.monotonic()
        check_eq(lua(sw, "return sip.request{method='OPTIONS', uri='%s', timeout=0.25}"
                         ":wait().status" % uri(silent.port)), ["408"], "timeout = 0.25")
        dt = time.monotonic() - t0
        check(0.2 <= dt < 1.0, "timeout = 0.25 answered after %.2f s" % dt)


def test_nta_408_after_64_t1():
    """No timeout given: nta's own 408 after 64 * T1 = 6.4 s."""
    with SilentRegistrar() as silent, Switch(POLICY) as sw:
        t0 = time.monotonic()
        out = lua(sw, """
            local tx = sip.request{ method = "OPTIONS", uri = "%s" }
            local r = tx:wait()
            return r.status, tx.state
        """ % uri(silent.port))
        dt = time.monotonic() - t0
        check_eq(out, ["408", "completed"], "nta's timeout")
        check(5.9 <= dt < 9.0, "nta's 408 came after %.2f s, expected 64 * 100 ms" % dt)


def test_network_failures_answer():
    """Failures to reach the peer answer with a status, they do not raise."""
    with Switch(POLICY) as sw:
        out = lua(sw, """
            local a = sip.request{ method = "OPTIONS", uri = "sip:nonexistent.invalid",
                                   timeout = 5 }:wait()
            local b = sip.request{ method = "OPTIONS", uri = "sip:127.0.0.1:1;transport=tcp",
                                   timeout = 5 }:wait()
            local c = sip.request{ method = "INVITE", uri = "sip:127.0.0.1:1;transport=tcp",
                                   timeout = 5 }:wait()
            return a.status, b.status, c.status
        """)
        check_eq(out, ["503", "503", "503"], "DNS failure, TCP refused (OPTIONS, INVITE)")
        check_eq(sw.options(), 200, "OPTIONS after network failures")


# ---- Misuse, limits, garbage, reload --------------------------------------------------


def test_misuse_errors_name_the_argument():
    with SilentRegistrar() as silent, Switch(POLICY) as sw:
        u = uri(silent.port)
        cases = [
            ("sip.request{ uri = '%s' }" % u, "'method'"),
            ("sip.request{ method = 'options', uri = '%s' }" % u, "'method'"),
            ("sip.request{ method = 42, uri = '%s' }" % u, "'method'"),
            ("sip.request{ method = 'ACK', uri = '%s' }" % u, "'method'"),
            ("sip.request{ method = 'CANCEL', uri = '%s' }" % u, "'method'"),
            ("sip.request{ method = 'OPTIONS' }", "'uri'"),
            ("sip.request{ method = 'OPTIONS', uri = 5 }", "'uri'"),
            ("sip.request{ method = 'OPTIONS', uri = 'http://example.com/' }", "'uri'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', body = 5 }" % u, "'body'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', body = {} }" % u, "'body'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', timeout = 'soon' }" % u, "'timeout'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', timeout = 0 }" % u, "'timeout'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', timeout = -1 }" % u, "'timeout'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', headers = 'X-A: 1' }" % u, "'headers'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', headers = { ['X-A'] = {} } }" % u,
             "'headers'"),
            ("sip.request{ method = 'OPTIONS', uri = '%s', headers = { ['X A'] = '1' } }" % u,
             "'headers'"),
            # Header injection through a value is refused.
            ("sip.request{ method = 'OPTIONS', uri = '%s', "
             "headers = { ['X-A'] = '1\\r\\nVia: evil' } }" % u, "'headers'"),
            ("sip.request()", "table expected"),
            ("sip.request('OPTIONS')", "table expected"),
        ]
        for chunk, needle in cases:
            err = lua_error(sw, "return " + chunk)
            check(needle in err, "%s: the error %r does not name %s" % (chunk, err, needle))
        # The silent peer got nothing: misuse sends nothing.
        time.sleep(0.2)
        check_eq(len(silent.requests()), 0, "datagrams sent by misused sip.request calls")
        # Waiting outside a task (a plain coroutine) is refused with a reason.
        err = lua_error(sw, "local tx = sip.request{method='OPTIONS', uri='%s', timeout=0.2} "
                            "return coroutine.wrap(function() return tx:wait() end)()" % u)
        check("cannot wait here" in err, "wait() in a plain coroutine: %r" % err)
        # Messages are read-only.
        with Kamailio() as k:
            err = lua_error(sw, "local r = sip.request{method='OPTIONS', uri='%s'}:wait() "
                                "r.status = 500" % uri(k.port))
            check("read-only" in err, "writing a response field: %r" % err)
        # The switch carries on.
        check_eq(lua(sw, "return 1 + 1"), ["2"], "a chunk after the errors")


def test_max_pending_cap():
    """sip.max_pending = 5: the sixth concurrent request raises a clear error;
    finishing transactions free their places."""
    with SilentRegistrar() as silent, Switch(POLICY) as sw:
        u = uri(silent.port)
        check_eq(lua(sw, "return sip.max_pending"), ["10000"], "the default cap")
        out = lua(sw, """
            sip.max_pending = 5
            held = {}
            for i = 1, 5 do
              held[i] = sip.request{ method = "OPTIONS", uri = "%s", timeout = 1 }
            end
            local ok, err = pcall(sip.request, { method = "OPTIONS", uri = "%s" })
            return ok, err
        """ % (u, u))
        check_eq(out[0], "false", "the sixth request")
        check("sip.max_pending = 5" in out[1] and "5 transactions are pending" in out[1],
              "the cap error is not clear: %r" % out[1])
        # Unprotected, the error reaches moonctl.
        err = lua_error(sw, "return sip.request{method='OPTIONS', uri='%s'}" % u)
        check("max_pending" in err, "the cap error through moonctl: %r" % err)
        # Once they time out (408), their places are free again.
        out = lua(sw, """
            local st = {}
            for i = 1, 5 do st[i] = held[i]:wait().status end
            held = nil
            local extra = {}
            for i = 1, 5 do
              extra[i] = sip.request{ method = "OPTIONS", uri = "%s", timeout = 0.2 }
            end
            for i = 1, 5 do st[#st + 1] = extra[i]:wait().status end
            sip.max_pending = nil
            return table.concat(st, ",")
        """ % u)
        check_eq(out, [",".join(["408"] * 10)], "requests after the first five finished")


def test_gc_unfinished_transactions():
    """100 requests to a silent peer, dropped unfinished and collected: their
    places under the cap come back, the switch carries on, and exits clean
    (the harness fails the test on a sanitizer report)."""
    with SilentRegistrar() as silent, Switch(POLICY) as sw:
        u = uri(silent.port)
        out = lua(sw, """
            sip.max_pending = 100
            local txs = {}
            for i = 1, 100 do txs[i] = sip.request{ method = "OPTIONS", uri = "%s" } end
            local full = pcall(sip.request, { method = "OPTIONS", uri = "%s" })
            local states = txs[1].state .. "," .. txs[100].state
            txs = nil
            collectgarbage()
            collectgarbage()
            -- Had the 100 survived, these would hit the cap.
            local again = {}
            for i = 1, 100 do
              again[i] = sip.request{ method = "OPTIONS", uri = "%s", timeout = 0.3 }
            end
            local n = 0
            for i = 1, 100 do if again[i]:wait().status == 408 then n = n + 1 end end
            again = nil
            collectgarbage()
            collectgarbage()
            sip.max_pending = nil
            return full, states, n, stats().tasks
        """ % (u, u, u))
        check_eq(out, ["false", "calling,calling", "100", "1"],
                 "cap reached, collected, 100 new requests timed out, one task (this chunk)")
        check(len(silent.requests()) >= 200, "the silent peer saw only %d datagrams"
              % len(silent.requests()))
        check_eq(sw.options(), 200, "OPTIONS after collecting 100 unfinished transactions")
        check_eq(lua(sw, "return 'alive'"), ["alive"], "a chunk afterwards")


def test_transaction_outlives_reload():
    """A chunk waits for an answer that takes 2 s; a reload meanwhile does
    not lose it: the 200 comes back into the coroutine that asked."""
    with Sipp("uas_options_delayed_200.xml") as uas, Switch(POLICY) as sw:
        t0 = time.monotonic()
        waiter = sw.ctl_popen("""
            local tx = sip.request{ method = "OPTIONS", uri = "%s" }
            local r = tx:wait()
            return r.status, r.reason, tx.state
        """ % uri(uas.port))
        try:
            time.sleep(0.5)
            check(waiter.poll() is None, "the waiting chunk ended before the reload")
            sw.write_policy("50-reloaded.lua", "-- a change, for the reload\n")
            check_eq(lua(sw, "return (reload())"), ["true"], "reload() while a request waits")
            check(sw.wait_log("reloaded (generation 2)", 5), "no reload in the log\n%s"
                  % sw.log_tail())
            out, err = waiter.communicate(timeout=20)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        dt = time.monotonic() - t0
        check_eq((waiter.returncode, out.decode(), err.decode()),
                 (0, "200\nLate But OK\ncompleted\n", ""), "the chunk started before the reload")
        check(dt >= 1.9, "answered after %.2f s; the UAS waits 2 s" % dt)
        sipp_ok(uas)
        # The new policy sends requests too.
        with Kamailio() as k:
            check_eq(lua(sw, "return sip.request{method='OPTIONS', uri='%s'}:wait().status"
                         % uri(k.port)), ["200"], "a request under the new policy")


if __name__ == "__main__":
    run_tests(globals())
