"""SIP over TLS: a tls: listener that phones send OPTIONS and REGISTER to
(openssl s_client and Python's ssl as the phones) and get calls on; the
switch registering to Kamailio's tls module and calling through it as a TLS
carrier; peer verification (trusted CA, host name); handshake failures in
registrations[n].last_error; the certificate checks at policy load and the
certificate renewed by reload(); the protocol versions and ciphers offered;
the per-source handshake rate and the handshake deadline. Certificates are
made here with `openssl req`.
"""

import hashlib
import os
import re
import select
import socket
import ssl
import subprocess
import time
import uuid

from harness import (Switch, check, check_eq, fail, free_port, parse_response, require_tool,
                     run_check, scratch_dir, tcp_read_reply, run_tests)
from peers import Kamailio, reg, registration, switch_policy, wait_state, wait_until
from calls_peers import caller, carrier, check_cdr, mapping, routing, wait_cdrs, wait_done


# ---- Certificates ------------------------------------------------------------


def make_cert(directory, name, cn="127.0.0.1", san="IP:127.0.0.1"):
    """A self-signed P-256 certificate and key; (cert path, key path)."""
    require_tool("openssl")
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    args = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=%s" % cn]
    if san:
        args += ["-addext", "subjectAltName=%s" % san]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(p.returncode == 0, "openssl req: %s" % p.stdout.decode())
    return cert, key


def der_of(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def tls_policy(cert, key, **tls):
    t = {"certificate": cert, "key": key}
    t.update(tls)
    fields = ", ".join('%s = %s' % (k, ('"%s"' % v) if isinstance(v, str) else
                                    ("true" if v is True else "false" if v is False else v))
                       for k, v in t.items())
    return "switch { tls = { %s }, sip = { resend_interval = 100, endpoint_digest = \"md5\" } }\n" \
        % fields


def tls_switch(policies, label=None):
    """A Switch listening on tls:127.0.0.1:<sw.tls_port> besides UDP and TCP."""
    port = free_port()
    sw = Switch(policies, label=label, extra_args=["--listen", "tls:127.0.0.1:%d" % port])
    sw.tls_port = port
    return sw


# ---- A phone over TLS ------------------------------------------------------------


def client_context(**kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


class TlsPhone:
    """A SIP phone on one TLS connection to the switch."""

    def __init__(self, port, user="1001", password="pw1001", timeout=5.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        self.sock = client_context().wrap_socket(raw)
        self.port = port
        self.user, self.password = user, password
        self.buf = bytearray()
        self.call_id = uuid.uuid4().hex + "@phone"
        self.cseq = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def read(self, timeout=5.0):
        """The next message (request or response) as bytes, or None."""
        return tcp_read_reply(self.sock, timeout, want_final=False, buf=self.buf)

    def read_final(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.read(deadline - time.monotonic())
            if msg is None:
                return None
            parsed = parse_response(msg)
            if parsed and parsed[0] >= 200:
                return parsed
        return None

    def request(self, method, extra=(), expires=None):
        self.cseq += 1
        lines = ["%s sip:127.0.0.1:%d SIP/2.0" % (method, self.port),
                 "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK-%s;rport"
                 % (self.local_port, uuid.uuid4().hex[:12]),
                 "Max-Forwards: 70",
                 "From: <sip:%s@127.0.0.1>;tag=ph%d" % (self.user, self.local_port),
                 "To: <sip:%s@127.0.0.1>" % self.user,
                 "Call-ID: %s" % self.call_id,
                 "CSeq: %d %s" % (self.cseq, method),
                 "Contact: <sip:%s@127.0.0.1:%d;transport=tls>" % (self.user, self.local_port)]
        if expires is not None:
            lines.append("Expires: %d" % expires)
        lines += list(extra)
        lines.append("Content-Length: 0")
        self.send("\r\n".join(lines) + "\r\n\r\n")
        return self.read_final()

    def register(self, expires=300):
        first = self.request("REGISTER", expires=expires)
        check(first is not None, "no answer to REGISTER over TLS")
        if first[0] != 401:
            return first
        uri = "sip:127.0.0.1:%d" % self.port
        auth = "Authorization: " + self.digest(first[1]["www-authenticate"][0], "REGISTER",
                                               uri)
        return self.request("REGISTER", extra=[auth], expires=expires)

    def digest(self, challenge, method, uri):
        """The Authorization value answering `challenge` (MD5, qop auth)."""
        params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
        ha1 = hashlib.md5(("%s:%s:%s" % (self.user, params["realm"], self.password)).encode())
        ha2 = hashlib.md5(("%s:%s" % (method, uri)).encode())
        cnonce, nc = uuid.uuid4().hex[:8], "00000001"
        resp = hashlib.md5(":".join([ha1.hexdigest(), params["nonce"], nc, cnonce, "auth",
                                     ha2.hexdigest()]).encode()).hexdigest()
        auth = ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
                'algorithm=MD5, qop=auth, nc=%s, cnonce="%s"'
                % (self.user, params["realm"], params["nonce"], uri, resp, nc, cnonce))
        if "opaque" in params:
            auth += ', opaque="%s"' % params["opaque"]
        return auth

    def call(self, number, timeout=10.0):
        """An INVITE to `number` on this connection, answering one digest
        challenge; (final status, headers of the final answer). The
        dialog's To (with tag) is kept for bye()."""
        uri = "sip:%s@127.0.0.1:%d;transport=tls" % (number, self.port)
        sdp = ("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
               "t=0 0\r\nm=audio 40002 RTP/AVP 0\r\n")
        self.call_id = uuid.uuid4().hex + "@phone"
        auth = None
        for _ in range(2):
            self.cseq += 1
            self.branch = "z9hG4bK-%s" % uuid.uuid4().hex[:12]
            lines = ["INVITE %s SIP/2.0" % uri,
                     "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=%s;rport"
                     % (self.local_port, self.branch),
                     "Max-Forwards: 70",
                     "From: <sip:%s@127.0.0.1>;tag=ph%d" % (self.user, self.local_port),
                     "To: <sip:%s@127.0.0.1>" % number,
                     "Call-ID: %s" % self.call_id,
                     "CSeq: %d INVITE" % self.cseq,
                     "Contact: <sip:%s@127.0.0.1:%d;transport=tls>"
                     % (self.user, self.local_port)]
            if auth:
                lines.append(auth)
            lines += ["Content-Type: application/sdp", "Content-Length: %d" % len(sdp)]
            self.send("\r\n".join(lines) + "\r\n\r\n" + sdp)
            final = self.read_final(timeout)
            check(final is not None, "no final answer to the INVITE over TLS")
            status, headers = final[0], final[1]
            if status in (401, 407):
                self.ack(headers, uri)
                name = "www-authenticate" if status == 401 else "proxy-authenticate"
                hname = "Authorization" if status == 401 else "Proxy-Authorization"
                auth = "%s: %s" % (hname, self.digest(headers[name][0], "INVITE", uri))
                continue
            return status, headers
        return status, headers

    def ack(self, headers, uri, cseq=None):
        to = headers["to"][0]
        self.send("\r\n".join([
            "ACK %s SIP/2.0" % uri,
            "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=%s;rport" % (self.local_port, self.branch),
            "Max-Forwards: 70",
            "From: <sip:%s@127.0.0.1>;tag=ph%d" % (self.user, self.local_port),
            "To: %s" % to, "Call-ID: %s" % self.call_id,
            "CSeq: %d ACK" % (cseq or self.cseq), "Content-Length: 0"]) + "\r\n\r\n")

    def in_dialog(self, method, target, to, timeout=5.0):
        """`method` to `target` in the dialog of the last call; for BYE its
        final answer (status, headers)."""
        if method != "ACK":
            self.cseq += 1  # an ACK of a 2xx has the INVITE's CSeq number
        branch = "z9hG4bK-%s" % uuid.uuid4().hex[:12]
        self.send("\r\n".join([
            "%s %s SIP/2.0" % (method, target),
            "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=%s;rport" % (self.local_port, branch),
            "Max-Forwards: 70",
            "From: <sip:%s@127.0.0.1>;tag=ph%d" % (self.user, self.local_port),
            "To: %s" % to, "Call-ID: %s" % self.call_id,
            "CSeq: %d %s" % (self.cseq, method), "Content-Length: 0"]) + "\r\n\r\n")
        return None if method == "ACK" else self.read_final(timeout)

    def answer_call(self, timeout=10.0):
        """Answer the next INVITE with 200 and SDP, take the ACK and answer
        the BYE; the INVITE's text."""
        invite = self._expect("INVITE", timeout)
        head = invite.decode().split("\r\n\r\n")[0].split("\r\n")
        keep = [h for h in head[1:] if h.split(":")[0].lower() in
                ("via", "v", "from", "f", "call-id", "i", "cseq")]
        to = [h for h in head[1:] if h.split(":")[0].lower() in ("to", "t")][0]
        sdp = ("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
               "t=0 0\r\nm=audio 40000 RTP/AVP 0\r\n")
        self.send("\r\n".join(["SIP/2.0 200 OK"] + keep +
                              [to + ";tag=phone", "Contact: <sip:%s@127.0.0.1:%d;transport=tls>"
                               % (self.user, self.local_port),
                               "Content-Type: application/sdp",
                               "Content-Length: %d" % len(sdp)]) + "\r\n\r\n" + sdp)
        self._expect("ACK", timeout)
        bye = self._expect("BYE", timeout)
        bhead = bye.decode().split("\r\n\r\n")[0].split("\r\n")
        bkeep = [h for h in bhead[1:] if h.split(":")[0].lower() in
                 ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]
        self.send("\r\n".join(["SIP/2.0 200 OK"] + bkeep + ["Content-Length: 0"]) + "\r\n\r\n")
        return invite.decode()

    def _expect(self, method, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.read(deadline - time.monotonic())
            if msg is None:
                break
            if msg.startswith(method.encode() + b" "):
                return msg
        fail("the phone got no %s over its TLS connection" % method)


def s_client_request(port, data, extra=(), timeout=5):
    """Send `data` through `openssl s_client` and read until a final SIP
    response or the end; (exit code or None, everything it printed)."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-quiet",
                          "-ign_eof"] + list(extra), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    p.stdin.write(data)
    p.stdin.flush()
    out = bytearray()
    deadline = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out.extend(chunk)
        if re.search(rb"SIP/2\.0 [2-6]\d\d .*?\r\n\r\n", out, re.S):
            break
    rc = p.poll()
    if rc is None:
        p.kill()
    p.wait()
    return rc, out.decode("utf-8", "replace")


def options_bytes(port):
    return ("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"
            "Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bK-%s;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\n"
            "To: <sip:127.0.0.1:%d>\r\nCall-ID: %s@probe\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n" % (port, uuid.uuid4().hex[:10], port,
                                           uuid.uuid4().hex)).encode()


def tls_handshake(port, timeout=3.0, **ctx):
    """Handshake once; (ok, the server's certificate in DER or the error)."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return False, str(e)
    try:
        s = client_context(**ctx).wrap_socket(raw)
        der = s.getpeercert(binary_form=True)
        s.close()
        return True, der
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return False, str(e)


ACCOUNTS = ('mapping_gateway "phones" { type = "register" }\n'
            'account "1001" { password = "pw1001", mapping_gateway = "phones" }\n')


# ---- Phones -------------------------------------------------------------------------


def test_phone_options_and_register_over_tls():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch")
    with tls_switch({"10.lua": tls_policy(cert, key) + ACCOUNTS}) as sw:
        # OPTIONS through openssl s_client, as a phone would send it.
        rc, out = s_client_request(sw.tls_port, options_bytes(sw.tls_port))
        check("SIP/2.0 200 OK" in out, "no 200 to OPTIONS over TLS (rc %r):\n%s" % (rc, out))
        check("Via: SIP/2.0/TLS" in out, "the 200's Via: %s" % out)
        # REGISTER with digest on a connection kept open.
        phone = TlsPhone(sw.tls_port)
        try:
            res = phone.register()
            check_eq(res[0], 200, "REGISTER over TLS")
            rc, out, err = sw.ctl('local b = endpoints("1001")[1]\n'
                                  'return b.transport, b.source, b.contact')
            check_eq(rc, 0, "endpoints() (%s)" % err)
            transport, source, contact = out.split("\n")[:3]
            check_eq(transport, "tls", "the binding's transport")
            check_eq(source, "127.0.0.1:%d" % phone.local_port, "the binding's source")
            check("transport=tls" in contact, "contact %r" % contact)
            # The connection stays usable: OPTIONS on it.
            check_eq(phone.request("OPTIONS")[0], 200, "OPTIONS on the phone's connection")
        finally:
            phone.close()


def test_call_to_a_phone_goes_down_its_tls_connection():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch")
    pol = tls_policy(cert, key) + ACCOUNTS + mapping()
    with tls_switch({"10.lua": pol}) as sw:
        phone = TlsPhone(sw.tls_port)
        try:
            check_eq(phone.register()[0], 200, "REGISTER over TLS")
            uac = caller(sw, number="1001", hold_ms=300)
            uac.start()
            invite = phone.answer_call(timeout=10)
            check(invite.startswith("INVITE sip:1001@127.0.0.1:%d;transport=tls" %
                                    phone.local_port), "the INVITE's Request-Line: %r"
                  % invite.split("\r\n")[0])
            check("SIP/2.0/TLS" in invite, "the INVITE's Via: %r" % invite)
            check_eq(uac.wait(20), 0, "the caller\n%s\n%s" % (uac.report(), sw.log_tail(60)))
        finally:
            phone.close()
        check_cdr(wait_cdrs(sw, 1), routing_gateway="endpoint:1001", status=200,
                  callee="1001")


def test_call_from_a_phone_over_tls_keeps_its_dialog_on_tls():
    """A phone that calls over TLS gets a Contact of the switch's TLS
    listener in the 200, so its ACK and BYE come back over TLS."""
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch")
    with carrier() as uas:
        pol = tls_policy(cert, key) + ACCOUNTS + routing("uas", uas.port)
        with tls_switch({"10.lua": pol}) as sw:
            phone = TlsPhone(sw.tls_port)
            try:
                check_eq(phone.register()[0], 200, "REGISTER over TLS")
                status, headers = phone.call("1555")
                check_eq(status, 200, "the call over TLS\n%s" % sw.log_tail(60))
                contact = headers["contact"][0]
                check("transport=tls" in contact and ":%d" % sw.tls_port in contact,
                      "the 200's Contact is the TLS listener: %r" % contact)
                target = re.search(r"<([^>]+)>", contact).group(1)
                phone.in_dialog("ACK", target, headers["to"][0])
                time.sleep(0.3)
                bye = phone.in_dialog("BYE", target, headers["to"][0])
                check(bye is not None and bye[0] == 200, "BYE over TLS: %r" % (bye,))
            finally:
                phone.close()
            wait_done(uas, sw)
            check_cdr(wait_cdrs(sw, 1), status=200, routing_gateway="uas", hangup="caller")


# ---- Carriers: registration and calls --------------------------------------------------


def test_registration_over_tls_to_kamailio():
    d = scratch_dir("tls-certs")
    kcert, kkey = make_cert(d, "kamailio")
    cert, key = make_cert(d, "switch")
    with Kamailio(tls=(kcert, kkey), max_expires=300) as k:
        pol = {"10.lua": tls_policy(cert, key) +
               registration("carrier", k.tls_port, username="100", transport="tls")}
        with tls_switch(pol) as sw:
            r = wait_state(sw, "carrier", ("active", "failed"), 10)
            check_eq(r["state"], "active", "state (%r)\n%s" % (r["last_error"], sw.log_tail()))
            check_eq(r["contact"], "sip:100@127.0.0.1:%d;transport=tls" % sw.tls_port,
                     "contact")
            saved = wait_until(k.saved, 5, what="a binding saved by Kamailio")
            check_eq(saved[-1]["proto"], "tls", "the protocol Kamailio saved the binding from")
            check_eq(saved[-1]["socket"], "127.0.0.1:%d" % k.tls_port,
                     "the socket Kamailio holds the binding on")
            regs = k.registers()
            check("transport=tls" in regs[-1]["contact"], "Contact %r" % regs[-1]["contact"])
            first_src = regs[-1]["src"]
            # A refresh reuses the connection.
            sw.ctl('return registrations.carrier:refresh()')
            r = wait_state(sw, "carrier", "active", 5, extra=lambda x: x["cseq"] > r["cseq"])
            check_eq(k.registers()[-1]["src"], first_src, "the refresh's connection")
            # Kamailio goes away and comes back on the same ports: the next
            # REGISTER opens a new connection.
            k.stop()
            time.sleep(0.5)
            k.start()
            sw.ctl('return registrations.carrier:refresh()')
            r = wait_state(sw, "carrier", "active", 10,
                           extra=lambda x: len(k.registers()) > len(regs) + 1)
            check(k.registers()[-1]["src"] != first_src,
                  "a new connection after Kamailio's restart: %r" % k.registers()[-1])


def test_call_through_a_tls_carrier():
    d = scratch_dir("tls-certs")
    kcert, kkey = make_cert(d, "kamailio")
    cert, key = make_cert(d, "switch")
    with carrier("call_uas_rr.xml") as uas, \
            Kamailio(tls=(kcert, kkey), relay="sip:127.0.0.1:%d" % uas.port) as k:
        # Kamailio record-routes: in-dialog requests go to the callee's
        # Contact through the route set ("contact"), not to the proxy's socket.
        pol = (tls_policy(cert, key) + mapping() +
               routing("tls-carrier", k.tls_port, transport="tls", request_address="contact"))
        with tls_switch({"10.lua": pol}) as sw:
            uac = caller(sw, hold_ms=500)
            uac.start()
            check_eq(uac.wait(20), 0, "the caller\n%s\n%s" % (uac.report(), sw.log_tail(60)))
            wait_done(uas, sw)
            rec = wait_cdrs(sw, 1)
            check_cdr(rec, status=200, routing_gateway="tls-carrier", hangup="caller")
            relayed = k.relayed()
            methods = [(x["method"], x["proto"]) for x in relayed]
            check(("INVITE", "tls") in methods, "Kamailio relayed: %r" % methods)
            check(("ACK", "tls") in methods and ("BYE", "tls") in methods,
                  "the ACK and the BYE over TLS too: %r" % methods)
            bye = [x for x in relayed if x["method"] == "BYE"][0]
            check("transport=tls" in (bye["route"] or ""),
                  "the BYE's Route (Kamailio's Record-Route): %r" % bye["route"])


def test_verify_peer():
    d = scratch_dir("tls-certs")
    kcert, kkey = make_cert(d, "kamailio")              # names 127.0.0.1
    other, _ = make_cert(d, "other", cn="other.example", san="DNS:other.example")
    named, named_key = make_cert(d, "named", cn="carrier.example", san="DNS:carrier.example")
    cert, key = make_cert(d, "switch")
    # Trusted and naming 127.0.0.1: active.
    with Kamailio(tls=(kcert, kkey)) as k:
        pol = {"10.lua": tls_policy(cert, key, ca=kcert, verify_peer=True) +
               registration("carrier", k.tls_port, transport="tls")}
        with tls_switch(pol) as sw:
            r = wait_state(sw, "carrier", ("active", "failed"), 10)
            check_eq(r["state"], "active", "state with a trusted certificate (%r)"
                     % r["last_error"])
    # Signed by nobody we trust: failed, the reason and the subject shown.
    with Kamailio(tls=(kcert, kkey)) as k:
        pol = {"10.lua": tls_policy(cert, key, ca=other, verify_peer=True) +
               registration("carrier", k.tls_port, transport="tls")}
        with tls_switch(pol) as sw:
            r = wait_state(sw, "carrier", ("active", "failed"), 10)
            check_eq(r["state"], "failed", "state with an untrusted certificate")
            check("certificate not trusted" in r["last_error"] and "CN=127.0.0.1" in
                  r["last_error"], "last_error: %r" % r["last_error"])
            check(sw.wait_log("subject /CN=127.0.0.1", 2), "the subject is not logged\n%s"
                  % sw.log_tail())
    # Trusted, but for another name than the server's: failed.
    with Kamailio(tls=(named, named_key)) as k:
        pol = {"10.lua": tls_policy(cert, key, ca=named, verify_peer=True) +
               registration("carrier", k.tls_port, transport="tls")}
        with tls_switch(pol) as sw:
            r = wait_state(sw, "carrier", ("active", "failed"), 10)
            check_eq(r["state"], "failed", "state with a certificate for another name")
            check("does not name 127.0.0.1" in r["last_error"] and "carrier.example" in
                  r["last_error"], "last_error: %r" % r["last_error"])


def test_handshake_failure_is_a_failed_registration():
    # A peer that speaks no TLS: it closes the connection at once.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    import threading

    def closer():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            c.recv(10)
            c.close()

    threading.Thread(target=closer, daemon=True).start()
    try:
        pol = {"10.lua": switch_policy() + registration("carrier", port, transport="tls")}
        with Switch(pol) as sw:  # no certificate, no tls: listener: a TLS client only
            r = wait_state(sw, "carrier", ("active", "failed", "timeout"), 10)
            check_eq(r["state"], "failed", "state (%r)" % r["last_error"])
            check(r["last_error"].startswith("TLS with 127.0.0.1:%d failed" % port),
                  "last_error: %r" % r["last_error"])
    finally:
        listener.close()


# ---- Policy and reload -----------------------------------------------------------------------


def test_bad_certificate_files_are_refused_with_file_and_line():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "a")
    cert_b, key_b = make_cert(d, "b")
    cases = [
        ({"certificate": "/nonexistent/cert.pem", "key": key},
         "tls.certificate: cannot read '/nonexistent/cert.pem'"),
        ({"certificate": cert, "key": "/nonexistent/key.pem"},
         "tls.key: cannot read '/nonexistent/key.pem'"),
        ({"certificate": cert, "key": key_b}, "does not match the certificate"),
        ({"certificate": key, "key": key}, "tls.certificate: no PEM certificate"),
        ({"certificate": cert}, "tls.key is missing"),
        ({"certificate": cert, "key": key, "ca": "/nonexistent/ca"}, "tls.ca: cannot read"),
    ]
    for tls, needle in cases:
        fields = ", ".join('%s = "%s"' % kv for kv in tls.items())
        text = "-- a comment\nswitch {\n  tls = { %s },\n}\n" % fields
        rc, out, pol = run_check({"10-switch.lua": text})
        check_eq(rc, 1, "--check with %r\n%s" % (tls, out))
        check(re.search(r"10-switch\.lua:2: switch: ", out), "no file:line in %r" % out)
        check(needle in out, "%r not in %r" % (needle, out))
    rc, out, _ = run_check({"10.lua": 'switch { listen = { "tls:127.0.0.1:5061" } }\n'})
    check(rc == 1 and "needs tls.certificate and tls.key" in out, out)
    rc, out, _ = run_check({"10.lua": "\n" + registration("c", 5061, transport="sctp")})
    check(rc == 1 and re.search(r"10\.lua:2: registration \"c\": field 'transport' must be "
                                r"\"udp\", \"tcp\" or \"tls\"", out), out)


def test_renewed_certificate_is_served_after_reload():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch", cn="127.0.0.1")
    first = der_of(cert)
    with tls_switch({"10.lua": tls_policy(cert, key)}) as sw:
        ok, der = tls_handshake(sw.tls_port)
        check(ok and der == first, "the first certificate: %r" % (der if not ok else "other"))
        # A connection open across the reload keeps working.
        phone = TlsPhone(sw.tls_port)
        try:
            # Renewed on disk: a new key and certificate at the same paths.
            make_cert(d, "switch", cn="renewed.example", san="IP:127.0.0.1")
            renewed = der_of(cert)
            check(renewed != first, "openssl made the same certificate")
            ok, der = tls_handshake(sw.tls_port)
            check(ok and der == first, "before reload() the running certificate stays")
            rc, out, err = sw.ctl("return reload()")
            check_eq((rc, out.split("\n")[0]), (0, "true"), "reload() (%s)" % err)
            ok, der = tls_handshake(sw.tls_port)
            check(ok and der == renewed, "after reload(): the renewed certificate")
            check_eq(phone.request("OPTIONS")[0], 200, "OPTIONS on the connection opened before")
            # A reload whose certificate does not load is refused; the
            # running one stays.
            with open(cert, "w") as f:
                f.write("garbage\n")
            rc, out, err = sw.ctl("return reload()")
            check("no PEM certificate" in out + err, "reload() with a broken file: %r %r"
                  % (out, err))
            ok, der = tls_handshake(sw.tls_port)
            check(ok and der == renewed, "the renewed certificate stays after a refused reload")
        finally:
            phone.close()


# ---- Protocol and limits -----------------------------------------------------------------------


def test_tls_versions_and_ciphers():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch")
    rsa_cert = os.path.join(d, "rsa-cert.pem")
    rsa_key = os.path.join(d, "rsa-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    rsa_key, "-out", rsa_cert, "-days", "2", "-subj", "/CN=127.0.0.1"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with tls_switch({"10.lua": tls_policy(rsa_cert, rsa_key)}) as sw:
        for version, want in (("-tls1_3", True), ("-tls1_2", True), ("-tls1_1", False),
                              ("-tls1", False)):
            rc, out = s_client_request(sw.tls_port, options_bytes(sw.tls_port),
                                       [version, "-cipher", "ALL:@SECLEVEL=0"])
            check_eq("SIP/2.0 200 OK" in out, want, "%s: %s" % (version, out[-600:]))
        # TLS 1.2 without forward secrecy or AEAD: refused.
        for cipher in ("AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "AES256-SHA256"):
            rc, out = s_client_request(sw.tls_port, options_bytes(sw.tls_port),
                                       ["-tls1_2", "-cipher", cipher])
            check("SIP/2.0 200 OK" not in out, "%s accepted: %s" % (cipher, out[-600:]))
        rc, out = s_client_request(sw.tls_port, options_bytes(sw.tls_port),
                                   ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])
        check("SIP/2.0 200 OK" in out, "ECDHE-RSA-AES128-GCM-SHA256: %s" % out[-600:])


def test_handshake_rate_per_source():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch")
    with tls_switch({"10.lua": tls_policy(cert, key, handshake_rate=5)}) as sw:
        time.sleep(1.1)  # the start-up's probes are in another second
        results = [tls_handshake(sw.tls_port)[0] for _ in range(15)]
        check(0 < results.count(True) <= 10 and results.count(False) >= 5,
              "handshakes in a burst of 15 at 5/s: %r" % results)
        check(sw.wait_log("over 5 handshakes a second: refused", 2), sw.log_tail())
        time.sleep(1.2)
        check(tls_handshake(sw.tls_port)[0], "a handshake in the next second")


def test_silent_connection_is_closed_after_the_handshake_deadline():
    d = scratch_dir("tls-certs")
    cert, key = make_cert(d, "switch")
    with tls_switch({"10.lua": tls_policy(cert, key)}) as sw:
        s = socket.create_connection(("127.0.0.1", sw.tls_port), timeout=20)
        try:
            t0 = time.monotonic()
            s.settimeout(20)
            try:
                data = s.recv(100)
            except OSError:
                data = b""
            took = time.monotonic() - t0
            check_eq(data, b"", "what a silent connection gets")
            check(9 <= took <= 13, "closed after %.1f s, expected about 10 s" % took)
        finally:
            s.close()
        check(tls_handshake(sw.tls_port)[0], "the listener still serves")


if __name__ == "__main__":
    run_tests(globals())
