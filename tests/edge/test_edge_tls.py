"""TLS on every public name: internal CA, a given wildcard, ACME (pebble), SNI passthrough, the API."""

import http.client
import json
import socket
import ssl
import threading
import time

import pytest

from edge.testing import EdgeProcess
from edgetest_helpers import SshClients, forward_argv, make_account, new_socket
from pebble_helpers import Pebble, have_pebble, make_ca_and_leaf

pytestmark = pytest.mark.timeout(120)


def tls_connect(edge, name: str, cafile) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(cafile))
    raw = socket.create_connection((edge.host, edge.https_port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=name)


def request(conn, name: str, path: str = "/", headers: str = "", body: bytes = b"") -> tuple:
    """One HTTP/1.1 request on an open (TLS) connection; (status, headers, body)."""
    head = "GET {} HTTP/1.1\r\nHost: {}\r\n{}".format(path, name, headers)
    if body:
        head = head.replace("GET", "POST", 1) + "Content-Length: {}\r\n".format(len(body))
    conn.sendall(head.encode() + b"\r\n" + body)
    f = conn.makefile("rb")
    status = int(f.readline().split()[1])
    fields = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        fields[k.strip().lower()] = v.strip()
    data = f.read(int(fields.get("content-length", 0)))
    return status, fields, data.decode(errors="replace")


def https_get(edge, name, cafile, path="/"):
    with tls_connect(edge, name, cafile) as conn:
        return request(conn, name, path)


def served_cert(edge, name: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection((edge.host, edge.https_port), timeout=10),
                         server_hostname=name) as conn:
        return conn.getpeercert(binary_form=True)


@pytest.fixture
def served(edge, account, ssh, backend):
    """An http socket with a connected tunnel: (socket, backend name)."""
    def make(socket_type="http", name="app"):
        sock = new_socket(edge, account, socket_type=socket_type)
        port = sock["tunnels"][0]["local_port"]
        ssh.start(forward_argv(edge, account, port, backend(name).port))
        edge.wait_forward(port)
        return sock
    return make


def test_internal_ca_by_default_for_http_and_https_sockets(edge, served):
    web, secure = served("http", "web"), served("https", "secure")
    assert edge.ca_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "internal CA's root certificate is" in edge.log_tail(10000)
    status, _, body = https_get(edge, web["dnsname"], edge.ca_cert, "/x")
    assert (status, body) == (200, "web /x\n")
    assert edge.get(web["dnsname"], "/y") == (200, "web /y\n")          # and plain HTTP
    assert https_get(edge, secure["dnsname"], edge.ca_cert)[::2] == (200, "secure /\n")
    conn = http.client.HTTPConnection(edge.host, edge.http_port, timeout=10)
    conn.request("GET", "/p?q=1", headers={"Host": secure["dnsname"]})
    resp = conn.getresponse()                    # https sockets: HTTPS only
    assert resp.status == 308 and resp.getheader("Mysocket-Edge") == "https-redirect"
    assert resp.getheader("Location") == "https://{}/p?q=1".format(secure["dnsname"])
    conn.close()


def test_no_certificate_for_names_the_edge_does_not_serve(edge):
    with pytest.raises(ssl.SSLError):
        https_get(edge, "nobody.example.com", edge.ca_cert)


def test_tls_socket_is_passed_through_by_sni_untouched(edge, account, ssh, tmp_path):
    sock = new_socket(edge, account, socket_type="tls")
    name = sock["dnsname"]
    ca, cert, key = make_ca_and_leaf(tmp_path, "app", "DNS:" + name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():          # the app terminates TLS itself: edge bytes pass untouched
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            data = tls.recv(1024)
            tls.sendall(b"app says: " + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = sock["tunnels"][0]["local_port"]
        ssh.start(forward_argv(edge, account, port, listener.getsockname()[1]))
        edge.wait_forward(port)
        with tls_connect(edge, name, ca) as conn:      # trusts the APP's CA, not the edge's
            conn.sendall(b"hello")
            assert conn.recv(1024) == b"app says: hello"
        thread.join(10)
    finally:
        listener.close()


def test_the_api_answers_over_tls(edge, account):
    with tls_connect(edge, "api.edge.localhost", edge.ca_cert) as conn:
        body = json.dumps({"email": account.email, "password": account.password}).encode()
        status, fields, text = request(conn, "api.edge.localhost", "/login",
                                       "Content-Type: application/json\r\n", body)
    assert status == 200 and json.loads(text)["token"]


def test_a_given_wildcard_certificate_is_served(tmp_path, backend):
    ca, cert, key = make_ca_and_leaf(tmp_path, "wild", "DNS:*.edge.localhost")
    ssh = SshClients(tmp_path)
    with EdgeProcess(tmp_path / "e", admin=True,
                     extra_args=("--tls-cert", str(cert), "--tls-key", str(key))) as edge:
        try:
            acct = make_account(edge, tmp_path)
            sock = new_socket(edge, acct)
            port = sock["tunnels"][0]["local_port"]
            ssh.start(forward_argv(edge, acct, port, backend("wild").port))
            edge.wait_forward(port)
            assert https_get(edge, sock["dnsname"], ca)[::2] == (200, "wild /\n")
            assert served_cert(edge, sock["dnsname"]) == ssl.PEM_cert_to_DER_cert(
                cert.read_text())
        finally:
            ssh.stop_all()


def test_acme_certificate_issued_served_and_renewed_without_dropping(tmp_path, backend):
    """End to end against a real ACME server: HTTP-01 through the edge's own HTTP port."""
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    ssh = SshClients(tmp_path)
    with Pebble(tmp_path / "pebble", validity_seconds=3600) as pebble:
        args = ("--acme-directory", pebble.directory, "--acme-ca", str(pebble.ca),
                "--acme-renew-before", "3598", "--acme-check-interval", "1")
        with EdgeProcess(tmp_path / "e", admin=True, extra_args=args) as edge:
            try:
                pebble.start(edge.http_port)
                root = tmp_path / "pebble-root.pem"
                root.write_text(pebble.root())
                acct = make_account(edge, tmp_path)
                sock = new_socket(edge, acct)
                name = sock["dnsname"]
                port = sock["tunnels"][0]["local_port"]
                ssh.start(forward_argv(edge, acct, port, backend("acme").port))
                edge.wait_forward(port)
                kept = tls_connect(edge, name, root)          # verified against pebble's root
                assert request(kept, name, "/1")[::2] == (200, "acme /1\n")
                first = kept.getpeercert()
                assert ("DNS", name) in first["subjectAltName"]
                # Renewal (less than 3598 s left of 3600 after ~2 s): a new serial on new
                # handshakes, while the connection opened before keeps working.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with tls_connect(edge, name, root) as fresh:
                        if fresh.getpeercert()["serialNumber"] != first["serialNumber"]:
                            break
                    time.sleep(0.5)
                else:
                    raise AssertionError("no renewal seen:\n" + edge.log_tail(40))
                assert request(kept, name, "/2")[::2] == (200, "acme /2\n")
                kept.close()
                assert "ACME: certificate for {} issued".format(name) in edge.log_tail(1000)
            finally:
                ssh.stop_all()
