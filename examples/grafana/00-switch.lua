-- A switch that Prometheus scrapes, for the Grafana dashboard beside.
--
-- `metrics` opens an HTTP listener; GET /metrics answers in Prometheus'
-- text format. It has no authentication: keep it on a loopback or private
-- address. A reload may move it or close it (remove the field).
--
--   curl -s http://127.0.0.1:9464/metrics | grep moonswitch_calls
--   prometheus --config.file=examples/grafana/prometheus.yml
--   Grafana: Dashboards > Import > examples/grafana/moonswitch.json
--
-- The dashboard shows per carrier (routing gateway) ASR, ACD and PDD, calls
-- in progress, registrations, SIP traffic and the switch's own health. Add
-- the gateways of a real set-up (see two-carriers-failover/) to fill it.

switch {
  listen = { "udp:127.0.0.1:5060", "tcp:127.0.0.1:5060" },
  metrics = "127.0.0.1:9464",
}
