"""examples/least-cost: its route() orders the carriers by the rates of the
current time band (os.date replaced from the REPL to visit each band),
rewrites the numbers, refuses what has no rate, skips carriers switched off
in kv; and a real call through the example (its addresses pointed at local
SIPp peers) reaches the cheapest carrier left with the numbers rewritten.
"""

import os

from harness import SOURCE_DIR, Switch, check, check_eq, run_tests
from peers import lua_value
from calls_peers import (caller, carrier, check_cdr, ctl_value, received_header,
                         received_invite, run, wait_cdrs, wait_done)

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "least-cost")


def example_files(subst=None):
    files = {}
    for name in sorted(os.listdir(EXAMPLE)):
        if name.endswith(".lua"):
            with open(os.path.join(EXAMPLE, name)) as f:
                text = f.read()
            for k, v in (subst or {}).items():
                text = text.replace(k, v)
            files[name] = text
    return files


# route() for a plain-table call at a given time: the chosen carriers (or
# the status), and the rewritten numbers.
CHUNK = """
local real = os.date
os.date = function(f, t)
  if f == "*t" then return { year = 2026, month = 6, day = 1, wday = %d, hour = %d, min = 0 } end
  return real(f, t)
end
local headers = {}
local c = { direction = "outbound", caller = %s, callee = %s,
            set_header = function(self, k, v) headers[k] = v end }
local ok, a, b = pcall(route, c)
os.date = real
if not ok then return "error: " .. tostring(a) end
local what = type(a) == "table" and table.concat(a, ",") or tostring(a) .. " " .. tostring(b)
return what .. " | " .. c.caller .. " " .. c.callee .. " | " .. tostring(headers["X-LCR"])
"""


def decide(sw, wday, hour, caller_no, callee):
    return ctl_value(sw, CHUNK % (wday, hour, lua_value(caller_no), lua_value(callee)))


def test_route_by_time_band():
    with Switch(example_files()) as sw:
        # Tuesday 10:00 (peak), a UK mobile: carrier-c 0.021 before carrier-a 0.025.
        check_eq(decide(sw, 3, 10, "02071234567", "00447700900123"),
                 "carrier-c,carrier-a | 442071234567 447700900123 | 447/peak", "peak")
        # Tuesday 22:00 (offpeak): carrier-a 0.015 is cheaper now.
        check_eq(decide(sw, 3, 22, "+442071234567", "+447700900123"),
                 "carrier-a,carrier-c | 442071234567 447700900123 | 447/offpeak", "offpeak")
        # Sunday: carrier-a has no weekend mobile rate.
        check_eq(decide(sw, 1, 10, "442071234567", "447700900123"),
                 "carrier-c | 442071234567 447700900123 | 447/weekend", "weekend")
        # UK fixed at night: carrier-b 0.004 first.
        check_eq(decide(sw, 5, 2, "anonymous", "00442079460000"),
                 "carrier-b,carrier-a | anonymous 442079460000 | 44/offpeak", "fixed")
        check_eq(decide(sw, 3, 10, "1001", "0033140000000"),
                 "404 No Rate | 1001 33140000000 | nil", "no rate")
        check_eq(decide(sw, 3, 10, "1001", "12#34"), "484 Address Incomplete | 1001 12#34 | nil",
                 "not a number")
        ctl_value(sw, 'kv.put("lcr:off:carrier-c", "maintenance") return true')
        check_eq(decide(sw, 1, 10, "1001", "447700900123"), "503 No Carrier | 1001 447700900123 | nil",
                 "weekend mobile with carrier-c off")
        check_eq(decide(sw, 3, 10, "1001", "49301234567"),
                 "carrier-b | 1001 49301234567 | 49/peak", "Germany with carrier-c off")


def test_a_call_through_the_example():
    with carrier("call_uas.xml") as b:
        files = example_files({
            '"198.51.100.7"': '"127.0.0.1"',
            '"203.0.113.10:5060"': '"127.0.0.1:9"',
            '"203.0.113.20:5060"': '"127.0.0.1:%d"' % b.port,
            '"192.0.2.30:5060"': '"127.0.0.1:9"',
        })
        with Switch(files) as sw:
            ctl_value(sw, 'kv.put("lcr:off:carrier-c", "maintenance") return true')
            # Germany: carrier-b and carrier-c have rates in every band; c is off.
            run(caller(sw, number="0049301234567", keys={"pai": "02071234567"}), sw)
            wait_done(b, sw)
            ruri, _ = received_invite(b)
            check(ruri.startswith("sip:+49301234567@"), "carrier-b's format: %r" % ruri)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="carrier-b",
                      caller="442071234567", callee="49301234567",
                      original_callee="0049301234567", routed_callee="+49301234567")
            check(received_header(b, "X-LCR").startswith("49/"), "the X-LCR header")
            check(received_header(b, "From").split("@")[0].endswith("442071234567"),
                  "the rewritten caller in From")


if __name__ == "__main__":
    run_tests(globals())
