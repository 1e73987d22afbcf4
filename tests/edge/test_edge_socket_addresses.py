"""Sockets with an address of their own (--socket-addresses): a Gateway's address, routed whatever the Host."""

import http.client
import json
import time

import pytest

from edge.testing import EdgeProcess
from edgetest_helpers import forward_argv, make_account

pytestmark = pytest.mark.timeout(120)
ADDRESSES = "127.100.3.0/30"            # two usable addresses: .1 and .2


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """An edge on every address of the namespace (0.0.0.0), owning ADDRESSES for sockets that ask."""
    # No --admin: it refuses a listener beyond loopback, and the tunnel's `connected` says enough here.
    proc = EdgeProcess(tmp_path_factory.mktemp("edge"), extra_args=(
        "--socket-addresses", ADDRESSES, "--registration", "open", "--api-listen", "127.0.0.1"))
    proc.host = "0.0.0.0"
    with proc:
        proc.host = "127.0.0.1"        # the API, the SSH server and the socket names answer there too
        yield proc


def get(address, port, host, path="/"):
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Mysocket-Edge"), resp.read().decode(errors="replace")
    finally:
        conn.close()


def wait_connected(edge, account, base, tunnel_id, timeout=10.0):
    """Until the edge says the tunnel's forward is up (`connected`, what the API reports on the wire)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock = edge.api("GET", base, token=account.token).body
        if any(t["tunnel_id"] == tunnel_id and t.get("connected") for t in sock.get("tunnels") or []):
            return
        time.sleep(0.05)
    raise TimeoutError(f"tunnel {tunnel_id} never connected")


def table(hostname, backend):
    return {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "hostname": hostname, "routes": [
        {"hostname": "", "match": {"path": {"type": "PathPrefix", "value": "/"}}, "action": 0}]}],
        "actions": [{"filters": [], "backends": [{"backend": backend, "weight": 1}]}]}


def test_an_own_address_routes_any_host_by_the_table(edge, tmp_path, ssh, backend):
    account = make_account(edge, tmp_path)
    made = [edge.api("POST", "/socket", {"name": f"gw{i}", "own_address": True}, token=account.token).body
            for i in range(2)]
    assert [s["address"] for s in made] == ["127.100.3.1", "127.100.3.2"]
    full = edge.api("POST", "/socket", {"name": "gw3", "own_address": True}, token=account.token)
    assert full.status == 503 and "--socket-addresses" in full.body["error_message"]
    plain = edge.api("POST", "/socket", {"name": "plain"}, token=account.token).body
    assert plain["address"] == ""

    gw = made[0]
    base = "/socket/{}".format(gw["socket_id"])
    tunnel = edge.api("POST", base + "/tunnel", {"backend": "shop/web:80"}, token=account.token).body
    app = backend("shop")
    ssh.start(forward_argv(edge, account, tunnel["local_port"], app.port))
    wait_connected(edge, account, base, tunnel["tunnel_id"])
    assert edge.api("PUT", base + "/routes", {"routes": table("shop.example.com", "shop/web:80")},
                    token=account.token).status == 200

    status, _, body = get(gw["address"], edge.http_port, "shop.example.com", "/x")
    assert (status, body) == (200, "shop /x\n")
    status, reason, _ = get(gw["address"], edge.http_port, "other.example.com")
    assert (status, reason) == (404, "no-route")            # the listener is for shop.example.com only
    status, reason, _ = get("127.0.0.1", edge.http_port, "shop.example.com")
    assert (status, reason) == (404, "unknown-host")        # on the edge's other addresses: by Host, as before

    assert edge.api("DELETE", base, token=account.token).status == 204
    status, reason, _ = get(gw["address"], edge.http_port, "shop.example.com")
    assert (status, reason) == (404, "unknown-host")
    again = edge.api("POST", "/socket", {"name": "gw4", "own_address": True}, token=account.token).body
    assert again["address"] == "127.100.3.1"               # given back when its socket was deleted
    assert json.dumps(again).count("127.100.3.1") == 1
    for sock in (again, made[1]):                          # the next test's addresses
        assert edge.api("DELETE", "/socket/{}".format(sock["socket_id"]), token=account.token).status == 204


def self_signed(name):
    """(cert PEM, key PEM) of a self-signed certificate for `name` (what a Gateway's Secret holds)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def https_get(address, port, name, path, cadata):
    """(the raw answer, the peer's certificate) of one GET over TLS with SNI `name`, trusting `cadata`."""
    import socket
    import ssl

    context = ssl.create_default_context(cadata=cadata)
    with socket.create_connection((address, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=name) as conn:
        conn.sendall("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n".format(path, name).encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer, conn.getpeercert()


def test_an_https_listener_on_an_own_address_terminates_with_its_certificate(edge, tmp_path, ssh, backend):
    import ssl

    account = make_account(edge, tmp_path)
    gw = edge.api("POST", "/socket", {"name": "tls-gw", "own_address": True}, token=account.token).body
    base = "/socket/{}".format(gw["socket_id"])
    tunnel = edge.api("POST", base + "/tunnel", {"backend": "shop/secure:443"}, token=account.token).body
    app = backend("secure")
    ssh.start(forward_argv(edge, account, tunnel["local_port"], app.port))
    wait_connected(edge, account, base, tunnel["tunnel_id"])
    cert, key = self_signed("secure.example.com")
    routes = table("secure.example.com", "shop/secure:443")
    routes["listeners"][0].update(port=443, protocol="HTTPS", certificates=[{"cert": cert, "key": key}])
    assert edge.api("PUT", base + "/routes", {"routes": routes}, token=account.token).status == 200

    answer, peer = https_get(gw["address"], edge.https_port, "secure.example.com", "/over-tls", cert)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nsecure /over-tls\n"), answer
    assert peer["subjectAltName"] == (("DNS", "secure.example.com"),)
    with pytest.raises(ssl.SSLError):                      # a server name no listener takes: refused
        https_get(gw["address"], edge.https_port, "other.example.com", "/", cert)
    edge.api("DELETE", base, token=account.token)
