"""Custom hostnames: proof of control through real DNS, routing, SNI passthrough, certificates on demand.

One edge and one real Pebble for the module. Pebble's pebble-challtestsrv is the authoritative DNS
of the names outside the zone (``*.example.test``): the test writes the user's records there (its
management API), the edge's ``--hostname-resolver`` asks it for the proofs, and Pebble asks it
where to validate HTTP-01 (127.0.0.1, the edge, unless a test points a name elsewhere).
"""

import socket
import sqlite3
import ssl
import threading
import time

import pytest

from edge.testing import EdgeOptions, EdgeProcess
from edgetest_helpers import forward_argv, new_socket
from pebble_helpers import Pebble, have_pebble, make_ca_and_leaf, verified_serial

pytestmark = pytest.mark.timeout(120)


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("{} not within {} s".format(what, timeout))


@pytest.fixture(scope="module")
def pebble(tmp_path_factory):
    assert have_pebble(), "Debian's pebble is needed (.ci/run installs it: apt-get install pebble)"
    with Pebble(tmp_path_factory.mktemp("pebble")) as p:
        yield p


@pytest.fixture(scope="module")
def edge(tmp_path_factory, pebble):
    workdir = tmp_path_factory.mktemp("edge")
    with EdgeProcess(workdir, EdgeOptions(admin=True, extra_args=(
            "--acme-directory", pebble.directory, "--acme-ca", str(pebble.ca),
            "--acme-email", "ops@example.com",
            "--hostname-resolver", "127.0.0.1:{}".format(pebble.dns_port),
            "--hostname-check-interval", "1"))) as proc:
        pebble.start(proc.http_port)            # HTTP-01 on the edge's HTTP port; challtestsrv DNS
        root = workdir / "pebble-root.pem"
        root.write_text(pebble.root())
        proc.pebble_root = root
        yield proc


def served(edge, acct, ssh, backend, name, **fields) -> dict:
    sock = new_socket(edge, acct, **fields)
    port = sock["tunnels"][0]["local_port"]
    ssh.start(forward_argv(edge, acct, port, backend(name).port))
    edge.wait_forward(port)
    return sock


def claim(edge, acct, sock, *names):
    return edge.api("PUT", "/socket/{}/hostnames".format(sock["socket_id"]), {"hostnames": list(names)},
                    token=acct.token)


def txt_of(answer, name) -> str:
    entry = next(h for h in answer["hostnames"] if h["hostname"] == name)
    return next(r["value"] for r in entry["records"] if r["type"] == "TXT")


def state_of(edge, acct, sock, name) -> dict:
    got = edge.api("GET", "/socket/{}/hostnames".format(sock["socket_id"]), token=acct.token)
    assert got.status == 200, got.body
    return next(h for h in got.body if h["hostname"] == name)


def prove_by_txt(pebble, name, value):
    pebble.dns("set-txt", host="_mysocket-challenge.{}.".format(name), value=value)


def test_an_unproven_name_never_routes_nor_orders_and_says_what_to_create(edge, pebble, account, ssh,
                                                                          backend):
    sock = served(edge, account, ssh, backend, "app")
    resp = claim(edge, account, sock, "Nope.Example.Test.")
    assert resp.status == 200, resp.body
    [entry] = resp.body["hostnames"]
    assert (entry["hostname"], entry["verified"]) == ("nope.example.test", False)
    assert "CNAME record nope.example.test -> {}".format(sock["dnsname"]) in entry["message"]
    assert "TXT record _mysocket-challenge.nope.example.test with the value mysocket-verify=" in entry["message"]
    assert {r["type"] for r in entry["records"]} == {"CNAME", "TXT"}
    status, body = edge.get("nope.example.test", "/x")
    assert status == 404 and "no socket named nope.example.test" in body
    assert verified_serial(edge, "nope.example.test", edge.pebble_root) is None
    time.sleep(2.5)                         # past the control plane's next look at proven names
    assert pebble.orders_for("nope.example.test") == 0, "an unproven name caused an ACME order"
    assert "certificate for nope.example.test" not in edge.log_tail(400)
    assert edge.get(sock["dnsname"], "/y") == (200, "app /y\n")        # its own name is untouched


def test_bad_hostnames_are_refused_with_the_reason(edge, account):
    sock = new_socket(edge, account)
    cases = {("*.example.test",): "wildcards cannot be proven",
             ("x.edge.localhost",): "are the edge's own",
             ("not a name",): "not a host name",
             ("localhost",): "not a host name"}
    for names, why in cases.items():
        resp = claim(edge, account, sock, *names)
        assert resp.status == 400 and why in resp.body["error_message"], (names, resp.body)
    resp = edge.api("PUT", "/socket/{}/hostnames".format(sock["socket_id"]), {"hostnames": "a.example.test"},
                    token=account.token)
    assert resp.status == 400 and "a list of host names" in resp.body["error_message"]


def test_txt_proof_routes_and_gets_a_certificate_once_kept_sealed(edge, pebble, account, ssh, backend):
    sock = served(edge, account, ssh, backend, "shop")
    name = "shop.example.test"
    first = claim(edge, account, sock, name)
    assert first.body["hostnames"][0]["verified"] is False
    prove_by_txt(pebble, name, txt_of(first.body, name))
    again = claim(edge, account, sock, name)                   # the same PUT checks again now
    assert again.status == 200 and again.body["hostnames"][0]["verified"] is True, again.body
    assert "verified by its TXT record" in again.body["hostnames"][0]["message"]
    assert edge.get(name, "/p") == (200, "shop /p\n")
    serial = until(lambda: verified_serial(edge, name, edge.pebble_root), 60, "a certificate for " + name)
    assert verified_serial(edge, name, edge.pebble_root) == serial
    assert pebble.orders_for(name) == 1, "more than one order for one name"
    with sqlite3.connect(edge.data_dir / "edge.sqlite3") as db:
        [(sealed,)] = db.execute("SELECT value FROM meta WHERE key = ?", ("hostcert:" + name,)).fetchall()
    assert "PRIVATE KEY" not in sealed and "CERTIFICATE" not in sealed     # sealed, not PEM


def test_cname_proof_verifies(edge, pebble, account):
    sock = new_socket(edge, account)
    name = "www.example.test"
    pebble.dns("set-cname", host=name + ".", target=sock["dnsname"] + ".")
    resp = claim(edge, account, sock, name)
    entry = resp.body["hostnames"][0]
    assert entry["verified"] is True and "CNAME to " + sock["dnsname"] in entry["message"], resp.body


def test_a_name_proven_by_one_account_is_never_another_accounts(edge, pebble, account, new_account):
    sock = new_socket(edge, account)
    name = "mine.example.test"
    prove_by_txt(pebble, name, txt_of(claim(edge, account, sock, name).body, name))
    assert claim(edge, account, sock, name).body["hostnames"][0]["verified"] is True
    other = new_account()
    theirs = new_socket(edge, other)
    resp = claim(edge, other, theirs, name)
    assert resp.status == 409, resp.body
    assert resp.body["error_message"] == "mine.example.test is proven by another account: it cannot be claimed here"
    # the other account's token differs: the first account's TXT record proves nothing for it
    second = new_socket(edge, account)
    resp = claim(edge, account, second, name)
    assert resp.status == 409 and "already a hostname of this account's socket" in resp.body["error_message"]


def test_a_proof_that_goes_is_noticed_and_one_that_comes_too(edge, pebble, account, ssh, backend):
    sock = served(edge, account, ssh, backend, "blog")
    name = "blog.example.test"
    txt = txt_of(claim(edge, account, sock, name).body, name)
    prove_by_txt(pebble, name, txt)                  # created after the claim: the periodic check finds it
    until(lambda: state_of(edge, account, sock, name)["verified"], 20, "verified by the periodic check")
    until(lambda: edge.get(name, "/")[0] == 200, 10, name + " served")
    pebble.dns("clear-txt", host="_mysocket-challenge.{}.".format(name))
    until(lambda: not state_of(edge, account, sock, name)["verified"], 20, "unverified once the proof is gone")
    assert "no proof found for blog.example.test" in state_of(edge, account, sock, name)["message"]
    until(lambda: edge.get(name, "/")[0] == 404, 10, name + " no longer served")


def test_a_failing_name_is_not_ordered_on_every_handshake(edge, pebble, account):
    sock = new_socket(edge, account)
    name = "broken.example.test"
    prove_by_txt(pebble, name, txt_of(claim(edge, account, sock, name).body, name))
    pebble.dns("add-a", host=name + ".", addresses=["127.0.0.9"])      # HTTP-01 cannot reach the edge
    assert claim(edge, account, sock, name).body["hostnames"][0]["verified"] is True
    until(lambda: "certificate for broken.example.test: the order failed" in edge.log_tail(400), 60,
          "the failed order")
    for _ in range(4):
        assert verified_serial(edge, name, edge.pebble_root) is None
    time.sleep(3)                           # past the control plane's next looks at the name
    assert pebble.orders_for(name) == 1, "a failing name was ordered again within its backoff"
    assert "not ordered again for 60 s, on any node" in edge.log_tail(400)


def test_a_tls_socket_passes_a_proven_name_through_by_sni(edge, pebble, account, ssh, tmp_path):
    sock = new_socket(edge, account, socket_type="tls")
    name = "secure.example.test"
    prove_by_txt(pebble, name, txt_of(claim(edge, account, sock, name).body, name))
    assert claim(edge, account, sock, name).body["hostnames"][0]["verified"] is True
    ca, cert, key = make_ca_and_leaf(tmp_path, "app", "DNS:" + name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():          # the app holds the certificate for its custom name
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"app says: " + tls.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = sock["tunnels"][0]["local_port"]
        ssh.start(forward_argv(edge, account, port, listener.getsockname()[1]))
        edge.wait_forward(port)
        ctx = ssl.create_default_context(cafile=str(ca))
        with ctx.wrap_socket(socket.create_connection((edge.host, edge.https_port), timeout=10),
                             server_hostname=name) as conn:
            conn.sendall(b"hello")
            assert conn.recv(1024) == b"app says: hello"
        thread.join(10)
    finally:
        listener.close()


def test_old_clients_see_an_unchanged_socket(edge, account):
    sock = new_socket(edge, account)
    assert sock["hostnames"] == []          # an addition: every other field as before
