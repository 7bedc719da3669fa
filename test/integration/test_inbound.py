"""Calls from carriers: a routing gateway's INVITE is recognised by where it
comes from and routed like a customer's. A static carrier at 127.0.0.2
calls an account's number and the registered phone at 127.0.0.3 gets it,
with the caller its peer_number_information chose, or route() rewrote; a
registration gateway's call is recognised by its server and our Contact in
the Request-URI; a dynamic gateway (a PBX whose account registers) is used
only while registered, and its own calls are inbound.
"""

from harness import Switch, check, check_eq, free_port, run_tests
from calls_peers import (caller, carrier, check_cdr, ctl_value, mapping, received_header,
                         received_invite, register_account, routing, run, switch_policy,
                         wait_cdrs, wait_done, wait_until)
from peers import registration, wait_state

CARRIER_IP, PHONE_IP = "127.0.0.2", "127.0.0.3"

PHONES = ('mapping_gateway "phones" { type = "register" }\n'
          'account "1001" { password = "pw1001", mapping_gateway = "phones" }\n')

# What the carrier's caller sends: From 442071234567, display "Alice",
# Remote-Party-ID 442070000003, P-Asserted-Identity 442070000004.
CARRIER_KEYS = {"caller": "442071234567", "display": "Alice", "rpid": "442070000003",
                "pai": "442070000004"}


def user_of(header):
    return header.split("sip:", 1)[1].split("@", 1)[0]


def carrier_gateway(port, **fields):
    f = dict(prefixes=["9"])  # serves nothing the tests call
    f.update(fields)
    return routing("carrier", port, **f).replace("127.0.0.1:%d" % port,
                                                 "%s:%d" % (CARRIER_IP, port))


class Seen:
    """What the phone received: header(name) of its INVITE."""

    def __init__(self, phone):
        self.headers = {h: received_header(phone, h) for h in ("From", "X-Source")}

    def header(self, name):
        return self.headers[name]


def call_the_phone(policy, number="1001", keys=None):
    """A switch with `policy(carrier_port)`; the phone registers as 1001
    from 127.0.0.3 and answers; the carrier at 127.0.0.2 calls `number`.
    Returns what the phone saw (Seen) and the CDR."""
    cport, pport = free_port(), free_port()
    with Switch({"10-calls.lua": policy(cport)}) as sw:
        register_account(sw, "1001", PHONE_IP, pport)
        with carrier("call_uas.xml", ip=PHONE_IP, port=pport) as phone:
            run(caller(sw, number=number, keys=dict(CARRIER_KEYS, **(keys or {})),
                       ip=CARRIER_IP, port=cport), sw)
            wait_done(phone, sw)
            rec = wait_cdrs(sw, 1)
            print("  CDR: %r" % rec)
            dirn = ctl_value(sw, "return cdrs.last(1)[1].direction")
            check_eq(dirn, "inbound", "the CDR's direction")
            return Seen(phone), rec


def test_carrier_calls_a_registered_phone():
    phone, rec = call_the_phone(
        lambda port: switch_policy(endpoint_digest="md5") + PHONES +
        carrier_gateway(port, peer_number_information="pai"))
    check_eq(user_of(phone.header("From")), "442070000004",
             "the caller the phone sees (peer_number_information = pai)")
    check_cdr(rec, status=200, caller="442070000004", callee="1001",
              mapping_gateway="carrier", routing_gateway="endpoint:1001", hangup="caller")


def test_peer_number_information_choices():
    for choice, want in (("from", "442071234567"), ("rpid", "442070000003"),
                         ("display", "Alice")):
        _, rec = call_the_phone(
            lambda port: switch_policy(endpoint_digest="md5") + PHONES +
            carrier_gateway(port, peer_number_information=choice))
        check_cdr(rec, caller=want)


def test_peer_number_information_function():
    gw = lambda port: carrier_gateway(port).replace(  # noqa: E731
        "prefixes", 'peer_number_information = function(req) '
        'return "0" .. req.from.user:sub(3) end, prefixes')
    phone, rec = call_the_phone(lambda port: switch_policy(endpoint_digest="md5") + PHONES + gw(port))
    check_eq(user_of(phone.header("From")), "02071234567", "the function's number")
    check_cdr(rec, caller="02071234567")


def test_route_rewrites_an_inbound_caller():
    hook = """
function route(call)
  assert(call.direction == "inbound", call.direction)
  assert(call.source == "carrier", call.source)
  assert(call.source_address:match("^127%.0%.0%.2:%d+$"), call.source_address)
  assert(call.request_uri:match("^sip:1001@127%.0%.0%.1:"), call.request_uri)
  assert(call:header("P-Asserted-Identity"):find("442070000004", 1, true))
  assert(call.display == "Alice", call.display)
  call.caller = "0" .. call.caller:sub(3)
  call.display = "Carrier A"
  call:set_header("X-Source", call.source)
end
"""
    phone, rec = call_the_phone(lambda port: switch_policy(endpoint_digest="md5") + PHONES +
                                carrier_gateway(port) + hook)
    frm = phone.header("From")
    check_eq(user_of(frm), "02071234567", "the rewritten caller")
    check(frm.startswith('"Carrier A"'), "the display route() set: %r" % frm)
    check_eq(phone.header("X-Source"), "carrier", "the header route() set")
    check_cdr(rec, caller="02071234567", status=200)


def test_unknown_number_gets_404_and_unregistered_480():
    cport = free_port()
    pol = switch_policy(endpoint_digest="md5") + PHONES + carrier_gateway(cport)
    with Switch({"10-calls.lua": pol}) as sw:
        run(caller(sw, "call_uac_fail.xml", number="5550", code=404, keys=CARRIER_KEYS,
                   ip=CARRIER_IP, port=cport), sw)
        check_cdr(wait_cdrs(sw, 1), status=404, mapping_gateway="carrier")
        run(caller(sw, "call_uac_fail.xml", number="1001", code=480, keys=CARRIER_KEYS,
                   ip=CARRIER_IP, port=cport), sw)
        check_cdr(wait_cdrs(sw, 2), status=480, callee="1001")
        # The carrier's address is IP and port: from another port it is a
        # stranger, asked for an account's credentials.
        run(caller(sw, "call_uac_fail.xml", number="1001", code=407, keys=CARRIER_KEYS,
                   ip=CARRIER_IP), sw)


def test_registration_gateway_recognised_by_its_contact():
    rport = free_port()
    with carrier("reg_uas_200.xml", ip=CARRIER_IP, port=rport) as registrar, \
            carrier("call_uas.xml") as uas:
        pol = (switch_policy(endpoint_digest="md5") + mapping(addresses=["192.0.2.1"]) +
               registration("carrier-r", rport, username="acct77", password="x",
                            server=CARRIER_IP) +
               'routing_gateway "carrier-r" { type = "registration", registration = '
               '"carrier-r", address = "%s:%d", prefixes = { "9" } }\n' % (CARRIER_IP, rport) +
               routing("out", uas.port, prefixes=["1"]))
        with Switch({"10-calls.lua": pol}) as sw:
            wait_state(sw, "carrier-r", "active", 10)
            wait_done(registrar, sw)
            # The carrier sends to the Contact we registered, the number in To.
            run(caller(sw, number="acct77", to_user="1555", keys=CARRIER_KEYS,
                       ip=CARRIER_IP), sw)
            wait_done(uas, sw)
            rec = wait_cdrs(sw, 1)
            check_cdr(rec, mapping_gateway="carrier-r", routing_gateway="out", callee="1555",
                      caller="442071234567", status=200)
            check_eq(ctl_value(sw, "return cdrs.last(1)[1].direction"), "inbound", "direction")
            # Another user in the Request-URI is not our Contact: refused.
            run(caller(sw, "call_uac_fail.xml", number="someone", to_user="1555", code=403,
                       keys=CARRIER_KEYS, ip=CARRIER_IP), sw)


def test_dynamic_gateway_only_while_registered():
    pbx_port = free_port()
    with carrier("call_uas.xml") as out:
        pol = (switch_policy(endpoint_digest="md5") + mapping() +
               'mapping_gateway "pbxes" { type = "register" }\n'
               'account "pbx-7" { password = "pwpbx-7", mapping_gateway = "pbxes" }\n'
               'routing_gateway "pbx-7" { type = "dynamic", account = "pbx-7", '
               'prefixes = { "7" } }\n' + routing("out", out.port, prefixes=["1"]))
        with Switch({"10-calls.lua": pol}) as sw:
            check_eq(ctl_value(sw, 'return gateways["pbx-7"].online'), "false", "online")
            check_eq(ctl_value(sw, 'return gateways["pbx-7"].address'), "nil", "address")
            run(caller(sw, "call_uac_fail.xml", number="7001", code=503), sw)
            check_cdr(wait_cdrs(sw, 1), status=503, routing_gateway="")

            register_account(sw, "pbx-7", CARRIER_IP, pbx_port)
            check_eq(ctl_value(sw, 'return gateways["pbx-7"].online'), "true", "online")
            check_eq(ctl_value(sw, 'return gateways["pbx-7"].address'),
                     "%s:%d" % (CARRIER_IP, pbx_port), "address")
            with carrier("call_uas.xml", ip=CARRIER_IP, port=pbx_port) as pbx:
                run(caller(sw, number="7001"), sw)
                wait_done(pbx, sw)
                ruri, _ = received_invite(pbx)
                check(ruri.startswith("sip:7001@%s:%d" % (CARRIER_IP, pbx_port)),
                      "the PBX's Request-URI %r" % ruri)
            check_cdr(wait_cdrs(sw, 2), status=200, routing_gateway="pbx-7")

            # The PBX's own calls (from its address) are inbound calls.
            run(caller(sw, number="1555", keys=CARRIER_KEYS, ip=CARRIER_IP), sw)
            wait_done(out, sw)
            check_cdr(wait_cdrs(sw, 3), status=200, mapping_gateway="pbx-7",
                      routing_gateway="out")
            check_eq(ctl_value(sw, "return cdrs.last(1)[1].direction"), "inbound", "direction")

            register_account(sw, "pbx-7", CARRIER_IP, pbx_port,
                             scenario_name="regsrv_unregister.xml")
            wait_until(lambda: ctl_value(sw, 'return gateways["pbx-7"].online') == "false",
                       5, what="pbx-7 offline once unregistered")
            run(caller(sw, "call_uac_fail.xml", number="7001", code=503), sw)
            check_cdr(wait_cdrs(sw, 4), status=503)


if __name__ == "__main__":
    run_tests(globals())
