"""request_address: where in-dialog requests to a carrier go. A carrier
behind NAT answers with a Contact we cannot reach (here 127.0.0.1:9);
"socket" (the default) sends the ACK and BYE to the address the INVITE
reached, "contact" follows the Contact and so never reaches it.
"""
from harness import Switch, check, check_eq, run_tests
from calls_peers import (caller, carrier, check_cdr, mapping, routing, switch_policy,
                         wait_cdrs, wait_done)


def test_socket_reaches_a_carrier_behind_nat():
    with carrier("call_uas_badcontact.xml") as uas, \
            Switch({"10-calls.lua": switch_policy() + mapping() + routing("c", uas.port)}) as sw:
        uac = caller(sw)
        uac.start()
        check_eq(uac.wait(20), 0, "the call")
        wait_done(uas, sw)  # the carrier got its ACK and BYE
        check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller")


def test_contact_follows_the_unreachable_contact():
    with carrier("call_uas_badcontact.xml", extra=["-timeout", "6", "-timeout_error"]) as uas, \
            Switch({"10-calls.lua": switch_policy() + mapping() +
                    routing("c", uas.port, request_address="contact")}) as sw:
        uac = caller(sw)
        uac.start()
        uac.wait(20)
        rc = uas.wait(15)
        check(rc not in (0, None), "the carrier must miss its ACK and BYE (rc %r)" % rc)


if __name__ == "__main__":
    run_tests(globals())
