"""Retry and suspension (VOS3000 SS_ENDPOINT_REGISTER_RETRY/_SUSPEND):
account names and source IPs suspended after failed authentications,
unknown names suspended exactly like known ones, suspensions kept in LMDB
across kill -9, lifted from the REPL, and turned off by a suspend time of 0.
The first unauthenticated challenge is not a failure."""

import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests, scratch_dir  # noqa: E402
from test_registrar_auth import UA, accounts_policy, endpoints  # noqa: E402


def fail_once(ua):
    """One failed authentication (a wrong password); the final status."""
    st, hd = ua.transact(expires=60)
    if st != 401:
        return st
    return ua.transact(expires=60, auth=ua.auth_value(ua.pick(hd), password="wrong"))[0]


def test_challenges_are_not_failures():
    with Switch(accounts_policy(endpoint_register_retry=1)) as sw:
        with UA(sw.port, "1001") as ua:
            for _ in range(5):
                check_eq(ua.transact(expires=60)[0], 401, "unauthenticated REGISTER")
            check_eq(ua.register(expires=60)[0], 200, "registration after 5 challenges")


def test_unknown_name_suspended_like_a_known_one():
    pol = accounts_policy(endpoint_register_retry=3, endpoint_register_suspend=60)
    answers = {}
    for user in ("1001", "5555"):
        with Switch(pol) as sw:
            with UA(sw.port, user) as ua:
                answers[user] = [fail_once(ua) for _ in range(4)]
                answers[user].append(ua.register(expires=60)[0])
    check_eq(answers["1001"], [401, 401, 403, 403, 403], "known account")
    check_eq(answers["5555"], answers["1001"], "unknown name vs known account")


def test_source_ip_suspended_across_accounts_and_lifted():
    pol = accounts_policy(users=("1001", "1002", "1003"), endpoint_register_retry=3,
                          endpoint_register_suspend=600)
    with Switch(pol) as sw:
        # One failure for each of three names: none reaches 3, the source does.
        with UA(sw.port, "1001") as a, UA(sw.port, "1002") as b, UA(sw.port, "1003") as c:
            check_eq(fail_once(a), 401, "1001's failure")
            check_eq(fail_once(b), 401, "1002's failure")
            check_eq(fail_once(c), 403, "third failure from the source")
            check_eq(a.transact(expires=60)[0], 403, "another account from the source")
            rc, out, err = sw.ctl("return suspensions")
            check("source" in out and "127.0.0.1" in out, "suspensions: %r" % out)
            check("account" not in out.split("\n", 1)[1], "no account suspended: %r" % out)
            rc, out, err = sw.ctl('return suspensions()[1].kind, suspensions()[1].name')
            check_eq(out.split(), ["source", "127.0.0.1"], "suspensions()")
            rc, out, err = sw.ctl('return suspensions.lift("127.0.0.1")')
            check_eq(out.strip(), "true", "lift")
            check_eq(a.register(expires=60)[0], 200, "after the lift")


def test_account_suspension_survives_kill9_and_unsuspend():
    pol = accounts_policy(endpoint_register_retry=2, endpoint_register_suspend=600)
    top = scratch_dir("suspend-kill9")
    data = os.path.join(top, "data")
    with Switch(pol, data_dir=data) as sw:
        with UA(sw.port, "1001") as ua:
            check_eq([fail_once(ua), fail_once(ua)], [401, 403], "two failures")
        rc, out, err = sw.ctl('return accounts["1001"].suspended')
        check_eq(out.strip(), "true", "suspended")
        sw.send_signal(signal.SIGKILL)
        sw.wait(5)
    with Switch(pol, data_dir=data) as sw:
        with UA(sw.port, "1001") as ua:
            check_eq(ua.transact(expires=60)[0], 403, "still suspended after kill -9")
            rc, out, err = sw.ctl('local a = accounts["1001"] return a.suspended, '
                                  'a.suspended_until - os.time() > 500')
            check_eq(out.split(), ["true", "true"], "accounts view after the restart")
            # Lift both (the account and the source it came from).
            rc, out, err = sw.ctl('return accounts["1001"]:unsuspend(), '
                                  'suspensions.lift("127.0.0.1")')
            check_eq(out.split(), ["true", "true"], "unsuspend")
            check_eq(ua.register(expires=60)[0], 200, "registration after :unsuspend()")
            check_eq(len(endpoints(sw, "1001")), 1, "binding")
        rc, out, err = sw.ctl("return suspensions")
        check("(0 suspended)" in out, "suspensions after lifting: %r" % out)
    shutil.rmtree(top, ignore_errors=True)


def test_suspend_zero_never_suspends():
    pol = accounts_policy(endpoint_register_retry=1, endpoint_register_suspend=0)
    with Switch(pol) as sw:
        with UA(sw.port, "1001") as ua:
            check_eq([fail_once(ua) for _ in range(3)], [401, 401, 401], "failures")
            check_eq(ua.register(expires=60)[0], 200, "registration")


def test_success_clears_the_account_count():
    pol = accounts_policy(endpoint_register_retry=3, endpoint_register_suspend=600)
    with Switch(pol) as sw:
        with UA(sw.port, "1001") as ua:
            check_eq(fail_once(ua), 401, "failure 1")
            check_eq(ua.register(expires=60)[0], 200, "success")
            rc, out, err = sw.ctl('return accounts["1001"].failures')
            check_eq(out.strip(), "0", "account failures after a success")


if __name__ == "__main__":
    run_tests(globals())
