"""sip.authentication_retry (VOS3000 SS_SIP_AUTHENTICATION_RETRY): how many
carrier challenges in a row the switch answers, on a call's INVITE and on a
REGISTER, before it gives up. The default, 1, answers one; a carrier that
challenges twice (a new nonce, not stale) needs 2."""

from harness import Switch, check, check_eq, run_tests
from calls_peers import (UdpPeer, caller, carrier, check_cdr, mapping, run, sipp_log,
                         switch_policy, wait_cdrs, wait_done)
from peers import Kamailio, registration, reg, wait_state


def policy(k, uas_port, **sip):
    return (switch_policy(**sip) + mapping() + registration("reg", k.port, username="100") +
            'routing_gateway "viareg" { type = "registration", registration = "reg", '
            'address = "127.0.0.1:%d", prefixes = { "1" } }\n' % uas_port)


def test_carrier_challenging_twice_is_answered_twice():
    with Kamailio(max_expires=300) as k, carrier("call_uas_auth_twice.xml") as uas:
        with Switch({"10-calls.lua": policy(k, uas.port, authentication_retry=2)}) as sw:
            wait_state(sw, "reg", "active", 5)
            run(caller(sw), sw)
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, hangup="caller", routing_gateway="viareg")
        invites = [m for m in sipp_log(uas).split("\n") if m.startswith("INVITE ")]
        check_eq(len(invites), 3, "INVITEs at the carrier")


def test_second_challenge_ends_the_attempt_by_default():
    with Kamailio(max_expires=300) as k, carrier("call_uas_auth_twice.xml") as uas:
        with Switch({"10-calls.lua": policy(k, uas.port)}) as sw:
            wait_state(sw, "reg", "active", 5)
            run(caller(sw, "call_uac_fail.xml", code=407), sw)
            check_cdr(wait_cdrs(sw, 1), status=407, routing_gateway="viareg")
            uas.kill()


class ChallengingRegistrar(UdpPeer):
    """Answers each REGISTER 401 with a fresh nonce (never stale) until it
    has sent `challenges`, then 200 for 300 s."""

    def __init__(self, challenges):
        self.challenges = challenges
        self.sent = 0
        self.registers = []  # (has credentials, nonce answered)
        super().__init__()

    def on_datagram(self, data, addr):
        text = data.decode("utf-8", "replace")
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        if not head[0].startswith("REGISTER "):
            return
        keep, auth = [], None
        for h in head[1:]:
            name = h.split(":", 1)[0].strip().lower()
            if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                keep.append(h)
            elif name in ("to", "t"):
                keep.append(h + (";tag=reg1" if ";tag=" not in h else ""))
            elif name == "authorization":
                auth = h
            elif name in ("contact", "m"):
                contact = h.split(":", 1)[1].strip()
        with self.lock:
            self.registers.append(auth)
            if self.sent < self.challenges:
                self.sent += 1
                status = ('401 Unauthorized', 'WWW-Authenticate: Digest realm="reg.example", '
                          'nonce="nonce%d", algorithm=MD5' % self.sent)
            else:
                status = ("200 OK", "Contact: %s;expires=300" % contact)
        reply = "SIP/2.0 %s\r\n%s\r\n%s\r\nContent-Length: 0\r\n\r\n" % (
            status[0], "\r\n".join(keep), status[1])
        self.sock.sendto(reply.encode(), addr)


def test_registrar_challenging_twice():
    for retry, want in ((2, "active"), (1, "failed")):
        with ChallengingRegistrar(2) as r:
            sip = {"authentication_retry": retry} if retry != 1 else {}
            pol = switch_policy(**sip) + registration("r", r.port, username="u", password="p")
            with Switch({"10-carriers.lua": pol}) as sw:
                got = wait_state(sw, "r", ("active", "failed"), 5)
                check_eq(got["state"], want, "state with authentication_retry %d" % retry)
                with r.lock:
                    regs = list(r.registers)
                check_eq(len(regs), retry + 1, "REGISTERs with authentication_retry %d"
                         % retry)
                check(regs[0] is None and all(regs[1:]), "credentials: %r" % regs)
                for i, a in enumerate(regs[1:], 1):
                    check('nonce="nonce%d"' % i in a, "REGISTER %d answers nonce%d: %s"
                          % (i + 1, i, a))
                if want == "failed":
                    check("authentication" in (reg(sw, "r")["last_error"] or ""),
                          "last_error")


if __name__ == "__main__":
    run_tests(globals())
