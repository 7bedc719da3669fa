"""Calls and registered endpoints: a call to an account goes to its binding,
and a registered endpoint's INVITE is authenticated with digest (407) before
it is routed like any customer's.
"""
import os
import time

from harness import Switch, check, check_eq, free_port, run_tests
from peers import Sipp
from calls_peers import caller, carrier, check_cdr, routing, switch_policy, wait_cdrs, wait_done


def accounts():
    return ('mapping_gateway "phones" { type = "register" }\n'
            'account "1001" { password = "pw1001", mapping_gateway = "phones" }\n')


def register(sw, user, port):
    """Register `user` with Contact 127.0.0.1:port through SIPp, with digest."""
    csv = os.path.join(sw.dir, "reg-%d.csv" % port)
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n%s;[authentication username=%s password=pw%s];127.0.0.1;300;\n"
                % (user, user, user))
    with Sipp("regsrv_register.xml", port=port,
              remote="127.0.0.1:%d" % sw.port, extra=["-inf", csv]) as s:
        check_eq(s.wait(20), 0, "REGISTER of %s\n%s" % (user, s.report()))


def test_call_to_a_registered_account_goes_to_its_binding():
    port = free_port()
    pol = (switch_policy(endpoint_digest="md5") + accounts() +
           'mapping_gateway "cust" { addresses = { "127.0.0.1" } }\n')
    with Switch({"10-calls.lua": pol}) as sw:
        register(sw, "1001", port)
        time.sleep(0.5)  # the registering SIPp lets go of the port
        # The endpoint now answers calls on the port it registered.
        with Sipp("call_uas.xml", port=port, extra=["-m", "1"]) as phone:
            phone.start()
            uac = caller(sw, number="1001")
            uac.start()
            check_eq(uac.wait(20), 0, "the call to 1001")
            # The phone's SIPp reuses the port it registered from and may
            # complain about a second socket there; the call is what counts.
            check(phone.wait(10) is not None, "the phone's SIPp ended")
        check_cdr(wait_cdrs(sw, 1), routing_gateway="endpoint:1001", status=200,
                  callee="1001", mapping_gateway="cust")


def test_registered_endpoint_invite_is_authenticated():
    with carrier("call_uas.xml") as uas:
        # No static customer: 127.0.0.1 is known only through the account.
        # SIPp answers MD5 challenges only.
        pol = switch_policy(endpoint_digest="md5") + accounts() + routing("carrier", uas.port)
        with Switch({"10-calls.lua": pol}) as sw:
            csv = os.path.join(sw.dir, "auth.csv")
            with open(csv, "w") as f:
                f.write("SEQUENTIAL\n1001;[authentication username=1001 password=pw1001];\n")
            uac = caller(sw, "call_uac_auth.xml", number="1555", extra=["-inf", csv])
            uac.start()
            check_eq(uac.wait(20), 0, "the authenticated call")
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), mapping_gateway="phones", routing_gateway="carrier",
                      status=200)
            # Without credentials: challenged, never routed.
            bad = os.path.join(sw.dir, "bad.csv")
            with open(bad, "w") as f:
                f.write("SEQUENTIAL\n1001;[authentication username=1001 password=wrong];\n")
            uac2 = caller(sw, "call_uac_auth.xml", number="1555",
                          extra=["-inf", bad, "-timeout", "5", "-timeout_error"])
            uac2.start()
            check(uac2.wait(20) != 0, "a wrong password must not get through")


if __name__ == "__main__":
    run_tests(globals())
