"""Number handling: callee_rewrite, invite_use_contact on and off (the
Request-Line and To as the carrier sees them), callee_from, caller_from,
and the policy's route(call) hook (also when it names no usable gateway).
"""

from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, carrier, check_cdr, mapping, received_invite, routing, run,
                         switch_policy, wait_cdrs, wait_done)


def one_call(policy, uas_scenario="call_uas.xml", **caller_args):
    """One call through a switch running `policy(carrier_port)`: the carrier's
    (Request-URI, To) and the CDR."""
    with carrier(uas_scenario) as uas, Switch({"10-calls.lua": policy(uas.port)}) as sw:
        run(caller(sw, **caller_args), sw)
        wait_done(uas, sw)
        rec = wait_cdrs(sw, 1)
        return received_invite(uas), rec


def user_of(uri_or_header):
    return uri_or_header.split("sip:", 1)[1].split("@", 1)[0]


def test_rewrite_and_use_contact_off():
    (ruri, to), rec = one_call(
        lambda port: switch_policy() + mapping() +
        routing("carrier", port, prefixes=["00"], callee_rewrite=[["^00", ""], ["^1", "+1"]]),
        number="001555")
    check_eq(user_of(ruri), "+1555", "Request-Line user")
    check_eq(user_of(to), "+1555", "To user (invite_use_contact off)")
    check_cdr(rec, callee="001555", original_callee="001555", routed_callee="+1555")


def test_use_contact_on_keeps_the_original_in_to():
    (ruri, to), rec = one_call(
        lambda port: switch_policy(routing_gateway_invite_use_contact=True) + mapping() +
        routing("carrier", port, prefixes=["00"], callee_rewrite=[["^00", ""]]),
        number="001555")
    check_eq(user_of(ruri), "1555", "Request-Line user")
    check_eq(user_of(to), "001555", "To user (invite_use_contact on)")
    check_cdr(rec, routed_callee="1555", original_callee="001555")


def test_gateway_override_of_use_contact():
    (ruri, to), _ = one_call(
        lambda port: switch_policy(routing_gateway_invite_use_contact=True) + mapping() +
        routing("carrier", port, prefixes=["00"], callee_rewrite=[["^00", ""]],
                invite_use_contact=False),
        number="001555")
    check_eq((user_of(ruri), user_of(to)), ("1555", "1555"), "gateway says off")


def test_callee_from_to_and_request_line():
    # Request-Line 1777, To 1888.
    _, rec = one_call(lambda port: switch_policy() + mapping() + routing("carrier", port),
                      number="1777", to_user="1888")
    check_cdr(rec, callee="1888")
    _, rec = one_call(lambda port: switch_policy() + mapping(callee_from="request_line") +
                      routing("carrier", port), number="1777", to_user="1888")
    check_cdr(rec, callee="1777")


def test_escaped_numbers():
    # %XX in the Request-Line and To users and in P-Asserted-Identity: the
    # numbers routed, rewritten and recorded are decoded ('#' included, which
    # sofia leaves escaped, and PAI, which sofia does not parse); towards the
    # carrier a '#' is escaped again.
    (ruri, to), rec = one_call(
        lambda port: switch_policy() + mapping(caller_from="pai") +
        routing("carrier", port, prefixes=["00"], callee_rewrite=[["^00", ""]]),
        number="%30%30%2A21%2b1555%23", keys={"pai": "%2B40%304"})
    check_eq(user_of(ruri), "*21+1555%23", "Request-Line user")
    check_eq(user_of(to), "*21+1555%23", "To user")
    check_cdr(rec, callee="00*21+1555#", original_callee="00*21+1555#",
              routed_callee="*21+1555#", caller="+4004")
    # Escapes of what a number cannot hold (a space, a control) stay escaped.
    (ruri, _), rec = one_call(
        lambda port: switch_policy() + mapping() + routing("carrier", port),
        number="1555%20%0D%0A9")
    check_eq(user_of(ruri), "1555%20%0D%0A9", "Request-Line user")
    check_cdr(rec, callee="1555%20%0D%0A9")


def test_caller_from_variants():
    # The caller sends From 1001, display "2002", RPID 3003, PAI 4004.
    for mode, want in (("from", "1001"), ("display", "2002"), ("rpid", "3003"),
                       ("pai", "4004")):
        (ruri, to), rec = one_call(
            lambda port: switch_policy() + mapping(caller_from=mode) + routing("carrier", port))
        check_cdr(rec, caller=want)


def test_route_hook_chooses_the_gateway():
    # Prefix routing would pick "a" (priority 1); the hook says "b", after
    # yielding once (sleep), with the call's fields readable.
    hook = """
function route(call)
  sleep(0.05)
  assert(call.caller == "1001" and call.callee == "1555" and call.mapping_gateway == "cust")
  return { "b" }
end
"""
    with carrier("call_uas.xml") as b:
        pol = switch_policy() + mapping() + routing("a", 9, priority=1) + \
            routing("b", b.port, priority=2) + hook
        with Switch({"10-calls.lua": pol}) as sw:
            run(caller(sw), sw)
            wait_done(b, sw)
            check_cdr(wait_cdrs(sw, 1), routing_gateway="b", status=200)
            check("route():" not in sw.log(), "route() raised:\n" + sw.log_tail())


def test_route_hook_naming_no_usable_gateway():
    # The hook's answer comes back and the call ends at once (503 No Route):
    # nothing may touch the call after that.
    hook = """
function route(call)
  return { "nowhere" }
end
"""
    pol = switch_policy() + mapping() + routing("a", 9) + hook
    with Switch({"10-calls.lua": pol}) as sw:
        run(caller(sw, "call_uac_fail.xml", code=503), sw)
        check_cdr(wait_cdrs(sw, 1), status=503, reason="No Route", hangup="switch")


if __name__ == "__main__":
    run_tests(globals())
