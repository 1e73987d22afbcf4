"""A Gateway's TCP listener and its TCPRoute through mysocketd and the edge: bytes echoed through the port the
edge gave the listener, the statuses that say which port that is, and what deleting the route and the Gateway
takes away (only this cluster's socket)."""

import re
import socket

import pytest
from gwtest_helpers import GW, apply, condition, get, service

from devcluster.stack import wait_for

pytestmark = pytest.mark.timeout(240)


def tcp_gateway(ns):
    return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns},
            "spec": {"gatewayClassName": "mysocket", "listeners": [{"name": "db", "port": 5432, "protocol": "TCP"}]}}


def tcp_route(ns, backend="echo"):
    return {"apiVersion": GW, "kind": "TCPRoute", "metadata": {"name": "t", "namespace": ns},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": "db"}],
                     "rules": [{"backendRefs": [{"name": backend, "port": 7000}]}]}}


def listener_status(cp, ns):
    gw = get(cp, "gateway", ns, "gw") or {}
    return next((lis for lis in (gw.get("status") or {}).get("listeners") or [] if lis["name"] == "db"), None)


def edge_port(cp, ns):
    """The edge's port for the listener, from its Programmed condition (None until it says so)."""
    lis = listener_status(cp, ns)
    programmed = next((c for c in (lis or {}).get("conditions") or [] if c["type"] == "Programmed"), None)
    if not programmed or programmed["status"] != "True":
        return None
    return int(re.search(r":(\d+)$", programmed["message"]).group(1))


def echo(edge, port, data=b"hello through the edge\n"):
    """What comes back for `data` sent to the edge's port (b"" when the edge closes the connection)."""
    try:
        with socket.create_connection((edge.host, port), timeout=5) as conn:
            conn.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk
            return got
    except OSError:
        return b""


def sockets(installed):
    token = installed.edge.login(installed.account.email, installed.account.password)
    return {s["name"]: s for s in installed.edge.api("GET", "/connect", token=token).body}


def test_bytes_echo_through_the_port_the_edge_gave_the_listener(installed):
    cp, edge = installed.cp, installed.edge
    cp.kubectl("create", "namespace", "tcp-echo")
    apply(cp, service("tcp-echo", "echo", "10.96.240.1", port=7000), tcp_gateway("tcp-echo"), tcp_route("tcp-echo"))
    installed.pods.for_service("tcp-echo", "echo", tcp_echo=True)
    port = wait_for("the TCP listener Programmed with the edge's port", lambda: edge_port(cp, "tcp-echo"), timeout=60)
    assert port != 5432
    data = b"\x00binary and text\r\n" * 100
    assert wait_for("bytes echoed through the edge", lambda: echo(edge, port, data) == data, timeout=60)

    lis = listener_status(cp, "tcp-echo")
    assert lis["attachedRoutes"] == 1
    assert lis["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}]
    accepted = next(c for c in lis["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert "port 5432 cannot be promised on a shared edge" in accepted["message"]
    route = get(cp, "tcproute", "tcp-echo", "t")
    assert {t: (condition(route, t)["status"], condition(route, t)["reason"]) for t in ("Accepted", "ResolvedRefs")} \
        == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    (name,) = [n for n in sockets(installed) if n.endswith("/gateway-tcp/tcp-echo/gw:db")]
    assert sockets(installed)[name]["socket_tcp_ports"] == [port] and sockets(installed)[name]["socket_type"] == "tcp"


def test_a_route_to_two_backends_is_refused_and_deleting_takes_only_this_clusters_socket(installed):
    cp, edge = installed.cp, installed.edge
    ns = "tcp-gone"
    cp.kubectl("create", "namespace", ns)
    two = tcp_route(ns)
    two["spec"]["rules"][0]["backendRefs"].append({"name": "echo2", "port": 7000})
    apply(cp, service(ns, "echo", "10.96.241.1", port=7000), service(ns, "echo2", "10.96.241.2", port=7000),
          tcp_gateway(ns), two)
    installed.pods.for_service(ns, "echo", tcp_echo=True)
    port = wait_for("the TCP listener Programmed", lambda: edge_port(cp, ns), timeout=60)
    refused = wait_for("two weighted backends refused", lambda: (condition(get(cp, "tcproute", ns, "t"), "Accepted")
                                                                 or {}).get("reason") == "UnsupportedValue" and
                       condition(get(cp, "tcproute", ns, "t"), "Accepted"))
    assert refused["status"] == "False" and "cannot weight backends" in refused["message"]
    assert echo(edge, port) == b""                                  # no backend: every connection refused

    apply(cp, tcp_route(ns))                                        # one backend: served
    assert wait_for("bytes echoed", lambda: echo(edge, port) == b"hello through the edge\n", timeout=60)
    cp.kubectl("delete", "tcproute", "t", "-n", ns)
    assert wait_for("connections refused once the route is gone", lambda: echo(edge, port) == b"", timeout=30)
    assert wait_for("the listener keeps its port", lambda: edge_port(cp, ns) == port)

    # Another cluster's socket for a Gateway of the same namespace and name, on the same account.
    token = edge.login(installed.account.email, installed.account.password)
    foreign = f"mysocketd/another-cluster/gateway-tcp/{ns}/gw:db"
    made = edge.api("POST", "/socket", {"name": foreign, "socket_type": "tcp"}, token=token)
    assert made.status == 200, made.body
    (ours,) = [n for n in sockets(installed) if n.endswith(f"/gateway-tcp/{ns}/gw:db") and n != foreign]
    cp.kubectl("delete", "gateway", "gw", "-n", ns)
    wait_for("this cluster's socket deleted", lambda: ours not in sockets(installed))
    assert foreign in sockets(installed)
    assert echo(edge, port) == b""
