"""baresip, a real user agent, registers to the switch's registrar (run
headless with a config directory made here) and shows in endpoints(); when
it exits it unregisters and the binding goes.

Debian's baresip 1.0 (libre 1.x) gives up on a 401 that holds any SHA-256
challenge, first or second ("Function not implemented": libre reads every
WWW-Authenticate and refuses an algorithm other than MD5), so the switch
offers MD5 only by default (endpoint_digest = "md5"), and this test keeps
the default. An account may be offered SHA-256 on its own: baresip's
account beside it still registers."""

import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Switch, check, check_eq, free_port, require_tool, run_tests  # noqa: E402
from peers import wait_until  # noqa: E402
from test_registrar_auth import accounts_policy, endpoints  # noqa: E402

MODULES = "/usr/lib/baresip/modules"


def write_config(d, sw_port, user, password, regint=60):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "accounts"), "w") as f:
        f.write("<sip:%s@127.0.0.1:%d;transport=udp>;auth_pass=%s;regint=%d\n"
                % (user, sw_port, password, regint))
    with open(os.path.join(d, "config"), "w") as f:
        f.write("module_path %s\n"
                "sip_listen 127.0.0.1:%d\n"
                "module_app account.so\n"
                "module g711.so\n"
                "module aufile.so\n"
                "audio_player aufile,/dev/null\n"
                "audio_source aufile,/dev/null\n" % (MODULES, free_port()))


def test_baresip_registers_and_unregisters():
    baresip = require_tool("baresip")
    check(os.path.isdir(MODULES), "%s missing (package baresip-core)" % MODULES)
    pol = accounts_policy()
    # Another account offered SHA-256 first changes nothing for 1001.
    pol["00-switch.lua"] += ('account "1003" { password = "pw1003", mapping_gateway = '
                             '"phones", digest = "sha256,md5" }\n')
    with Switch(pol) as sw:
        d = os.path.join(sw.dir, "baresip")
        write_config(d, sw.port, "1001", "pw1001")
        log = open(os.path.join(sw.dir, "baresip.log"), "wb")
        p = subprocess.Popen([baresip, "-f", d], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            b = wait_until(lambda: endpoints(sw, "1001"), 10, what="baresip's binding")
            check_eq(len(b), 1, "bindings")
            check(b[0]["contact"].startswith("sip:1001"), "contact %r" % b[0])
            check(55 <= b[0]["expires"] <= 60, "expires (regint 60): %r" % b[0])
            rc, out, err = sw.ctl('return endpoints("1001")[1].user_agent')
            check(out.startswith("baresip"), "user agent %r" % out)
            rc, out, err = sw.ctl('return accounts["1001"].bindings')
            check_eq(out.strip(), "1", "accounts view")
            # baresip unregisters when it stops.
            p.send_signal(signal.SIGTERM)
            wait_until(lambda: endpoints(sw, "1001") == [], 10,
                       what="the binding to go when baresip stops")
        finally:
            if p.poll() is None:
                p.kill()
            p.wait(5)
            log.close()


if __name__ == "__main__":
    run_tests(globals())
