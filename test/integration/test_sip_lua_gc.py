"""Garbage collection of transactions whose on_provisional callback refers
to the transaction itself (the natural way to write one:
`tx:on_provisional(function(res) ... tx.state ... end)`).

Such a transaction must still be collected once nothing else refers to it:
otherwise every one stays in memory (its C struct, its response, the
closure) until the next reload, and an unanswered one keeps its place under
sip.max_pending until nta gives up on it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import SilentRegistrar, switch_policy  # noqa: E402

POLICY = {"00-switch.lua": switch_policy(resend_interval=100)}


def lua(sw, chunk):
    rc, out, err = sw.ctl(chunk)
    check(rc == 0, "moonctl -e failed (rc %d): %s\n%s" % (rc, err, sw.log_tail(15)))
    return out.rstrip("\n").split("\n")


def test_unanswered_with_self_referencing_callback():
    with SilentRegistrar() as silent, Switch(POLICY) as sw:
        out = lua(sw, """
            sip.max_pending = 10
            for i = 1, 10 do
              local tx = sip.request{ method = "OPTIONS", uri = "sip:127.0.0.1:%d" }
              tx:on_provisional(function(res) return tx.state end)
            end
            collectgarbage()
            collectgarbage()
            local ok, err = pcall(sip.request, { method = "OPTIONS",
                                                 uri = "sip:127.0.0.1:%d", timeout = 0.2 })
            sip.max_pending = nil
            return ok, tostring(err)
        """ % (silent.port, silent.port))
        check_eq(out[0], "true", "a request after collecting 10 abandoned transactions "
                 "(sip.max_pending = 10): %s" % out[1])


def test_answered_with_self_referencing_callback():
    """2,000 answered transactions, each with such a callback, dropped and
    collected: the Lua heap comes back to where it was."""
    with Switch(POLICY) as sw:
        out = lua(sw, """
            local function run(with_callback)
              for i = 1, 2000 do
                -- port 1: refused at once (503), an answer without a peer
                local tx = sip.request{ method = "OPTIONS", uri = "sip:127.0.0.1:1",
                                        timeout = 1 }
                if with_callback then
                  tx:on_provisional(function(res) return tx.state end)
                end
                tx:wait()
              end
              collectgarbage()
              collectgarbage()
              return stats().lua_bytes
            end
            local base = run(false)
            local after = run(true)
            return base, after
        """)
        base, after = int(float(out[0])), int(float(out[1]))
        check(after - base < 50000, "the Lua heap grew by %d bytes over 2,000 collected "
              "transactions with a callback (%d -> %d)" % (after - base, base, after))


if __name__ == "__main__":
    run_tests(globals())
