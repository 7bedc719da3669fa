"""The sources of endpoint bindings are trusted by the flood limits: once a
phone on 127.0.0.3 has registered, it may send over security.source_rate
without a ban (the registrar's index of binding sources answers the trust
check); an unregistered source doing the same is banned, and so is the
phone's address once its binding is gone."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, run_tests  # noqa: E402
from peers import wait_until  # noqa: E402
from test_flood import flood, flood_suspensions, phone_from, policy, wait_banned  # noqa: E402

PHONE = "127.0.0.3"
OTHER = "127.0.0.8"


def test_binding_sources_are_trusted():
    with Switch(policy(rate=20, ban=60), log_level="info") as sw:
        ua = phone_from(sw, PHONE)
        with ua:
            check_eq(ua.register(expires=60)[0], 200, "the phone's REGISTER")
            flood(sw.port, PHONE, 400)
            flood(sw.port, OTHER, 400)
            wait_banned(sw, OTHER)
            check(PHONE not in flood_suspensions(sw), "the registered phone was banned")
            check_eq(ua.register(expires=0)[0], 200, "the phone's unREGISTER")
        rc, out, err = sw.ctl("return stats().bindings")
        check_eq(out.strip(), "0", "bindings after the unREGISTER")
        # The trust check's answer is cached 10 s (FLOOD_TRUST_CACHE_S).
        wait_until(lambda: (flood(sw.port, PHONE, 400), PHONE in flood_suspensions(sw))[1],
                   20, interval=1.0, what="the ban of the unregistered phone")


if __name__ == "__main__":
    run_tests(globals())
