"""HTTP/2 to visitors: real curl --http2 and h2load (nghttp2-client) against the edge.

Every TLS name offers h2 then http/1.1 in ALPN, and the plain HTTP port takes h2c with prior
knowledge; each stream is routed, checked, marked and limited as an HTTP/1.1 request is.
"""

import subprocess

import pytest

from edgetest_helpers import forward_argv, new_socket

pytestmark = pytest.mark.timeout(120)     # h2load comes from nghttp2-client (.ci/run installs it)


@pytest.fixture
def served(edge, account, ssh, backend):
    """Factory: a socket of the account with a connected tunnel to a backend named `name`."""
    def make(name="app", **fields):
        sock = new_socket(edge, account, **fields)
        port = sock["tunnels"][0]["local_port"]
        ssh.start(forward_argv(edge, account, port, backend(name).port))
        edge.wait_forward(port)
        return sock
    return make


def curl(edge, name: str, path: str = "/", *args, tls: bool = True) -> tuple:
    """curl --http2 (h2 by ALPN; --http2-prior-knowledge for plain HTTP): (HTTP version,
    status, headers in lower case, body)."""
    port = edge.https_port if tls else edge.http_port
    url = "{}://{}:{}{}".format("https" if tls else "http", name, port, path)
    argv = ["curl", "-sS", "--max-time", "20", "--resolve", "{}:{}:{}".format(name, port, edge.host),
            "-D", "-", "-w", "\n%{http_version}"]
    argv += ["--http2", "--cacert", str(edge.ca_cert)] if tls else ["--http2-prior-knowledge"]
    out = subprocess.run(argv + list(args) + [url], capture_output=True, text=True, timeout=30, check=True).stdout
    head, _, rest = out.partition("\n\n")      # text=True: CRLF read as LF
    body, _, version = rest.rpartition("\n")
    lines = head.splitlines()
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    return version, int(lines[0].split()[1]), headers, body


def test_every_tls_name_speaks_http2_with_the_same_routing(edge, served):
    web, secure = served("web"), served("secure", socket_type="https")
    assert curl(edge, web["dnsname"], "/x")[::3] == ("2", "web /x\n")
    assert curl(edge, secure["dnsname"], "/y")[::3] == ("2", "secure /y\n")
    # curl asking for http/1.1 only still gets it (ALPN falls back).
    version, status, _, body = curl(edge, web["dnsname"], "/z", "--http1.1")
    assert (version, status, body) == ("1.1", 200, "web /z\n")
    # h2c with prior knowledge on the plain port, for http sockets.
    assert curl(edge, web["dnsname"], "/p", tls=False)[::3] == ("2", "web /p\n")


def test_the_edges_own_answers_and_auth_over_http2(edge, served):
    version, status, headers, _ = curl(edge, "nobody.edge.localhost", "/", tls=False)  # no certificate for it
    assert (version, status, headers.get("mysocket-edge")) == ("2", 404, "unknown-host")
    locked = served("locked", protected_socket=True, protected_username="u", protected_password="secret")
    version, status, headers, _ = curl(edge, locked["dnsname"], "/")
    assert (version, status, headers.get("mysocket-edge")) == ("2", 401, "unauthorized")
    version, status, headers, body = curl(edge, locked["dnsname"], "/in", "-u", "u:secret")
    assert (version, status, body) == ("2", 200, "locked /in\n")
    assert "mysocket-edge" not in headers


def h2load(edge, name: str, requests: int, clients: int, streams: int, *args) -> dict:
    """h2load over TLS (h2 by ALPN) to the edge: its request counters."""
    argv = ["h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams),
            "--connect-to", "{}:{}".format(edge.host, edge.https_port), *args,
            "https://{}:{}/load".format(name, edge.https_port)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    assert "Application protocol: h2" in out, out
    line = next(x for x in out.splitlines() if x.startswith("requests:"))
    codes = next(x for x in out.splitlines() if x.startswith("status codes:"))
    words = line.replace(",", "").split()
    counts = {words[i + 1]: int(words[i]) for i in range(1, len(words) - 1, 2)}
    counts["2xx"] = int(codes.split()[2])
    return counts


def test_h2load_many_streams_on_few_connections_all_answered(edge, served):
    web = served("load")
    counts = h2load(edge, web["dnsname"], 2000, 4, 10)
    assert (counts["succeeded"], counts["failed"], counts["errored"], counts["2xx"]) == (2000, 0, 0, 2000)
