"""The internal CA is name-constrained to the zone: with ca.crt as the only trust, openssl
accepts the edge's own certificates and refuses one for a name outside the zone, even one
signed with the CA's own key (a leaked key, a mistake)."""

import socket
import ssl
import subprocess

import pytest

from edge.testing import EdgeOptions, EdgeProcess
from edgetest_helpers import make_account

pytestmark = pytest.mark.timeout(120)

ZONE = "edge.test"


def openssl(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def served_leaf(edge, name: str, cafile) -> str:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((edge.host, edge.https_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as conn:
        return ssl.DER_cert_to_PEM_cert(conn.getpeercert(binary_form=True))


def signed_by_the_ca(edge, workdir, name: str):
    """A leaf for name signed with the edge's CA key by openssl itself."""
    key, csr, crt, ext = (workdir / (name + s) for s in (".key", ".csr", ".pem", ".ext"))
    ext.write_text("subjectAltName=DNS:{}\n".format(name))
    assert openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                   "-subj", "/CN=" + name, "-keyout", str(key), "-out", str(csr)).returncode == 0
    made = openssl("x509", "-req", "-in", str(csr), "-CA", str(edge.data_dir / "ca.crt"),
                   "-CAkey", str(edge.data_dir / "ca.key"), "-CAcreateserial", "-days", "1",
                   "-extfile", str(ext), "-out", str(crt))
    assert made.returncode == 0, made.stderr
    return crt


def test_the_internal_ca_vouches_for_the_zone_only(tmp_path):
    with EdgeProcess(tmp_path / "edge", EdgeOptions(domain=ZONE)) as edge:
        ca = edge.data_dir / "ca.crt"
        text = openssl("x509", "-in", str(ca), "-noout", "-text").stdout
        assert "X509v3 Name Constraints: critical" in text and "DNS:edge.test" in text, text
        acct = make_account(edge, tmp_path)
        name = edge.api("POST", "/socket", {"name": "web"}, token=acct.token).body["dnsname"]
        leaf = tmp_path / "served.pem"
        leaf.write_text(served_leaf(edge, name, ca))
        ok = openssl("verify", "-CAfile", str(ca), "-verify_hostname", name, str(leaf))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        inside = openssl("verify", "-CAfile", str(ca), str(signed_by_the_ca(edge, tmp_path, "x." + ZONE)))
        assert inside.returncode == 0, inside.stdout + inside.stderr
        for outside in ("www.example.com", "edge.test.example.com"):
            refused = openssl("verify", "-CAfile", str(ca),
                              str(signed_by_the_ca(edge, tmp_path, outside)))
            assert refused.returncode != 0, refused.stdout
            assert "permitted subtree violation" in refused.stdout + refused.stderr
