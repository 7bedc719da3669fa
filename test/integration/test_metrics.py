"""switch.metrics: GET /metrics answers in Prometheus' text format (HELP and
TYPE for every family, well-formed samples), with the loop lag, heap, store,
Lua, SIP, registration and call series; other paths get 404; a reload moves,
opens and closes the listener; a bad address is refused with file:line; and
a real Prometheus, when installed, scrapes it."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Switch, check, check_eq, fail, free_port, run_check,  # noqa: E402
                     run_tests, scratch_dir, KEEP)


def switch_policy(metrics_port=None, extra=""):
    metrics = 'metrics = "127.0.0.1:%d",' % metrics_port if metrics_port else ""
    return {"00-switch.lua": "switch {\n  %s\n}\n%s" % (metrics, extra)}


DEAD_CARRIER = ('registration "carrier-a" { server = "127.0.0.1", port = %d, '
                'username = "u", password = "p" }\n')


def get(port, path="/metrics", method="GET", timeout=5):
    """(status, headers, body text) of one HTTP request to the listener."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse(text):
    """{family: type} and [(name, {label: value}, float)], failing on any
    line that breaks the text exposition format."""
    types, helps, samples = {}, set(), []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            check(kind in ("counter", "gauge", "histogram"), "TYPE %r" % line)
            check(name in helps, "TYPE before HELP for %s" % name)
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            check(m is not None, "malformed sample line %r" % line)
            name, labels = m.group(1), {}
            rest = m.group(3) or ""
            while rest:
                lm = LABEL.match(rest)
                check(lm is not None, "malformed labels in %r" % line)
                labels[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            check(name in types or (family in types and types[family] == "histogram"),
                  "sample %s without a TYPE line" % name)
            samples.append((name, labels, float(m.group(4))))
    return types, samples


def value(samples, name, **labels):
    found = [v for n, ls, v in samples if n == name and all(ls.get(k) == w
                                                            for k, w in labels.items())]
    check(found, "no sample %s%r" % (name, labels))
    return found[0]


def test_metrics_endpoint():
    mport, dead = free_port(), free_port()
    policy = switch_policy(mport, DEAD_CARRIER % dead)
    with Switch(policy) as sw:
        check(sw.wait_log("listening on http://127.0.0.1:%d/metrics" % mport),
              "no log line for the listener\n" + sw.log_tail())
        for _ in range(3):
            check_eq(sw.options(), 200, "OPTIONS")
        time.sleep(0.6)  # two loop-lag ticks
        status, headers, body = get(mport)
        check_eq(status, 200, "GET /metrics")
        check(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
              "Content-Type %r" % headers.get("Content-Type"))
        types, samples = parse(body)
        check(body.endswith("\n"), "the exposition ends with a newline")
        check("\nmoonswitch_calls_active 0\n" in body, "moonswitch_calls_active 0")
        for family, kind in [("moonswitch_calls_total", "counter"),
                             ("moonswitch_calls_active", "gauge"),
                             ("moonswitch_call_setup_seconds", "histogram"),
                             ("moonswitch_call_duration_seconds", "histogram"),
                             ("moonswitch_event_loop_lag_seconds", "histogram"),
                             ("moonswitch_heap_in_use_bytes", "gauge"),
                             ("moonswitch_registration_up", "gauge"),
                             ("moonswitch_sip_messages_total", "counter"),
                             ("moonswitch_store_commits_total", "counter"),
                             ("moonswitch_store_commit_seconds_total", "counter"),
                             ("process_cpu_seconds_total", "counter")]:
            check_eq(types.get(family), kind, "TYPE of %s" % family)
        check(value(samples, "moonswitch_event_loop_lag_seconds_count") >= 2, "lag ticks")
        lag_inf = value(samples, "moonswitch_event_loop_lag_seconds_bucket", le="+Inf")
        check_eq(lag_inf, value(samples, "moonswitch_event_loop_lag_seconds_count"),
                 "+Inf bucket = count")
        check(value(samples, "moonswitch_event_loop_lag_max_seconds") < 1.0, "lag under 1 s")
        check(value(samples, "moonswitch_heap_in_use_bytes") >= 0, "heap")
        check(value(samples, "moonswitch_store_used_bytes") > 0, "LMDB size")
        # The first start writes the digest secret and the carrier's
        # registration state through the writer thread.
        check(value(samples, "moonswitch_store_commits_total") >= 1, "store commits")
        check(value(samples, "moonswitch_store_commit_seconds_total") > 0, "store commit time")
        check(value(samples, "moonswitch_lua_bytes") > 0, "Lua memory")
        check(value(samples, "process_resident_memory_bytes") > 0, "RSS")
        check_eq(value(samples, "moonswitch_registration_up", registration="carrier-a"), 0.0,
                 "registration_up of a carrier that never answers")
        check(value(samples, "moonswitch_sip_requests_out_of_dialog_total",
                    method="OPTIONS") >= 3, "OPTIONS counted")
        check(value(samples, "moonswitch_sip_messages_total", direction="in",
                    kind="request") >= 3, "requests in")
        check(value(samples, "moonswitch_sip_messages_total", direction="out",
                    kind="request") >= 1, "REGISTERs out")
        print("  %d families, %d samples, %d bytes" % (len(types), len(samples), len(body)))

        status, _, body = get(mport, method="HEAD")
        check_eq((status, body), (200, ""), "HEAD /metrics")
        check_eq(get(mport, "/")[0], 404, "GET /")
        check_eq(get(mport, "/metrics/x")[0], 404, "GET /metrics/x")
        check_eq(get(mport, method="POST")[0], 405, "POST /metrics")
        check_eq(sw.options(), 200, "OPTIONS after the scrapes")


def test_metrics_reload():
    m1, m2 = free_port(), free_port()
    with Switch(switch_policy(None)) as sw:
        check(not listening(m1), "no listener without switch.metrics")
        sw.write_policy("00-switch.lua", switch_policy(m1)["00-switch.lua"])
        rc, out, err = sw.ctl("return reload()")
        check_eq(rc, 0, "reload adding metrics: %s %s" % (out, err))
        check_eq(get(m1)[0], 200, "GET after the reload that adds the listener")

        sw.write_policy("00-switch.lua", switch_policy(m2)["00-switch.lua"])
        rc, out, err = sw.ctl("return reload()")
        check_eq(rc, 0, "reload moving metrics: %s %s" % (out, err))
        check_eq(get(m2)[0], 200, "GET on the new address")
        check(not listening(m1), "the old address is closed")

        # A registration removed by a reload leaves the output.
        dead = free_port()
        sw.write_policy("00-switch.lua", switch_policy(m2, DEAD_CARRIER % dead)["00-switch.lua"])
        check_eq(sw.ctl("return reload()")[0], 0, "reload adding a registration")
        check('moonswitch_registration_up{registration="carrier-a"} 0' in get(m2)[2],
              "registration series after adding it")
        sw.write_policy("00-switch.lua", switch_policy(m2)["00-switch.lua"])
        check_eq(sw.ctl("return reload()")[0], 0, "reload removing the registration")
        check('registration="carrier-a"' not in get(m2)[2],
              "registration series gone after removing it")

        sw.write_policy("00-switch.lua", switch_policy(None)["00-switch.lua"])
        check_eq(sw.ctl("return reload()")[0], 0, "reload removing metrics")
        check(not listening(m2), "listener closed when switch.metrics goes")
        check_eq(sw.options(), 200, "OPTIONS after the reloads")


def test_metrics_bad_address():
    for bad in ("localhost:9464", "127.0.0.1", "127.0.0.1:0", "1.2.3.4:99999"):
        rc, out, _ = run_check({"00-switch.lua": "-- a comment\nswitch {\n"
                                                  "  metrics = %r,\n}\n" % bad})
        check_eq(rc, 1, "--check exit status for metrics = %r" % bad)
        check("00-switch.lua:2" in out and "metrics" in out and bad in out,
              "file:line and the value in %r" % out)
    rc, out, _ = run_check({"00-switch.lua": 'switch { metrics = 9464 }\n'})
    check_eq(rc, 1, "--check exit status for a number")
    check("00-switch.lua:1" in out and "metrics" in out, "file:line in %r" % out)


def test_metrics_port_taken():
    """A port already taken stops start-up with a clear message."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        sw = Switch(switch_policy(port), start_timeout=5)
        try:
            sw.start()
            fail("the switch started with its metrics port taken")
        except AssertionError as e:
            check("cannot listen on 127.0.0.1:%d" % port in str(e), "reason in %s" % e)
        finally:
            sw._cleanup(ok=True)
    finally:
        taken.close()


def prometheus_query(port, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


class Prometheus:
    """The real prometheus binary scraping 127.0.0.1:mport every second,
    its HTTP API on 127.0.0.1:self.port; use as a context manager."""

    def __init__(self, binary, mport):
        self.binary, self.mport, self.port = binary, mport, free_port()
        self.ok = False

    def __enter__(self):
        self.dir = d = scratch_dir("prometheus")
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: moonswitch\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.mport)
        self.log = open(os.path.join(d, "prometheus.log"), "wb")
        self.proc = subprocess.Popen([self.binary, "--config.file=" + cfg,
                                      "--storage.tsdb.path=" + os.path.join(d, "data"),
                                      "--web.listen-address=127.0.0.1:%d" % self.port],
                                     stdout=self.log, stderr=self.log)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if exc_type is None and not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif exc_type is not None:
            sys.stderr.write("prometheus kept in %s\n" % self.dir)

    def wait_result(self, expr, what, pred=lambda result: bool(result), timeout=60):
        """The result of query `expr` once pred(result) holds."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, "prometheus exited with %s" % self.proc.returncode)
            try:
                last = prometheus_query(self.port, expr)
                result = last.get("data", {}).get("result", [])
                if pred(result):
                    return result
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        fail("prometheus never had %s: %r" % (what, last))


def prometheus_binary():
    binary = shutil.which("prometheus")
    if not binary:
        print("  SKIPPED: no prometheus binary (scripts/setup --test installs Debian's "
              "prometheus package)")
    return binary


def test_prometheus_scrapes_the_switch():
    binary = prometheus_binary()
    if not binary:
        return
    mport = free_port()
    with Switch(switch_policy(mport)) as sw, Prometheus(binary, mport) as prom:
        result = prom.wait_result("moonswitch_calls_active", "moonswitch_calls_active")
        check_eq(result[0]["value"][1], "0", "moonswitch_calls_active")
        check_eq(result[0]["metric"].get("job"), "moonswitch", "job label")
        up = prometheus_query(prom.port, 'up{job="moonswitch"}')["data"]["result"]
        check_eq(up[0]["value"][1], "1", "up{job=moonswitch}")
        lag = prometheus_query(prom.port, "moonswitch_event_loop_lag_seconds_count")
        check(lag["data"]["result"], "the lag histogram is stored")
        check_eq(sw.options(), 200, "OPTIONS after the scrapes")


def test_prometheus_counts_calls_by_gateway_and_status():
    """SIPp calls through the switch, read back through Prometheus' query
    API: two answered calls and one refused (486), by mapping gateway,
    routing gateway and status."""
    from calls_peers import caller, carrier, mapping, routing, run, wait_cdrs, wait_done
    binary = prometheus_binary()
    if not binary:
        return
    mport = free_port()
    with carrier("call_uas.xml", calls=2) as ok_uas, \
            carrier("call_uas_fail.xml", code=486) as busy_uas:
        pol = switch_policy(mport, mapping() + routing("carrier", ok_uas.port, prefixes=["1"])
                            + routing("busy", busy_uas.port, prefixes=["2"]))
        pol["00-switch.lua"] = pol["00-switch.lua"].replace(
            "switch {", "switch {\n  sip = { resend_interval = 100, invite_timeout = 3 },")
        with Switch(pol) as sw, Prometheus(binary, mport) as prom:
            run(caller(sw, hold_ms=100, calls=2), sw)
            run(caller(sw, "call_uac_fail.xml", number="2555", code=486), sw)
            wait_done(ok_uas, sw)
            wait_done(busy_uas, sw)
            wait_cdrs(sw, 3)
            answered = prom.wait_result(
                'moonswitch_calls_total{mapping_gateway="cust",routing_gateway="carrier",'
                'status="200"}', "two answered calls",
                lambda r: bool(r) and r[0]["value"][1] == "2")
            check_eq(answered[0]["metric"].get("job"), "moonswitch", "job label")
            prom.wait_result(
                'moonswitch_calls_total{mapping_gateway="cust",routing_gateway="busy",'
                'status="486"}', "one refused call",
                lambda r: bool(r) and r[0]["value"][1] == "1")
            by_status = prom.wait_result(
                "sum by (status) (moonswitch_calls_total)", "calls by status",
                lambda r: len(r) == 2)
            got = {r["metric"]["status"]: r["value"][1] for r in by_status}
            check_eq(got, {"200": "2", "486": "1"}, "calls by status through PromQL")
            active = prom.wait_result("moonswitch_calls_active", "calls in progress",
                                      lambda r: bool(r) and r[0]["value"][1] == "0")
            check_eq(active[0]["value"][1], "0", "calls in progress after")


if __name__ == "__main__":
    run_tests(globals())
