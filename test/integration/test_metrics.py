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
                             ("process_cpu_seconds_total", "counter")]:
            check_eq(types.get(family), kind, "TYPE of %s" % family)
        check(value(samples, "moonswitch_event_loop_lag_seconds_count") >= 2, "lag ticks")
        lag_inf = value(samples, "moonswitch_event_loop_lag_seconds_bucket", le="+Inf")
        check_eq(lag_inf, value(samples, "moonswitch_event_loop_lag_seconds_count"),
                 "+Inf bucket = count")
        check(value(samples, "moonswitch_event_loop_lag_max_seconds") < 1.0, "lag under 1 s")
        check(value(samples, "moonswitch_heap_in_use_bytes") >= 0, "heap")
        check(value(samples, "moonswitch_store_used_bytes") > 0, "LMDB size")
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


def test_prometheus_scrapes_the_switch():
    binary = shutil.which("prometheus")
    if not binary:
        print("  SKIPPED: no prometheus binary (scripts/setup --test installs Debian's "
              "prometheus package)")
        return
    mport, pport = free_port(), free_port()
    with Switch(switch_policy(mport)) as sw:
        d = scratch_dir("prometheus")
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: moonswitch\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % mport)
        log = open(os.path.join(d, "prometheus.log"), "wb")
        prom = subprocess.Popen([binary, "--config.file=" + cfg,
                                 "--storage.tsdb.path=" + os.path.join(d, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % pport],
                                stdout=log, stderr=log)
        ok = False
        try:
            deadline = time.monotonic() + 60
            last = None
            while time.monotonic() < deadline:
                check(prom.poll() is None, "prometheus exited with %s" % prom.returncode)
                try:
                    last = prometheus_query(pport, "moonswitch_calls_active")
                    result = last.get("data", {}).get("result", [])
                    if result:
                        check_eq(result[0]["value"][1], "0", "moonswitch_calls_active")
                        check_eq(result[0]["metric"].get("job"), "moonswitch", "job label")
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.5)
            else:
                fail("prometheus never had moonswitch_calls_active: %r" % last)
            up = prometheus_query(pport, 'up{job="moonswitch"}')["data"]["result"]
            check_eq(up[0]["value"][1], "1", "up{job=moonswitch}")
            lag = prometheus_query(pport, "moonswitch_event_loop_lag_seconds_count")
            check(lag["data"]["result"], "the lag histogram is stored")
            ok = True
        finally:
            prom.terminate()
            try:
                prom.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
            log.close()
            if ok and not KEEP:
                shutil.rmtree(d, ignore_errors=True)
            elif not ok:
                sys.stderr.write("prometheus kept in %s\n" % d)
        check_eq(sw.options(), 200, "OPTIONS after the scrapes")


if __name__ == "__main__":
    run_tests(globals())
