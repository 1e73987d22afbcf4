"""GRPCRoutes through mysocketd and the edge: real grpcio servers on Services' ClusterIPs, a real grpcio client
speaking h2c with prior knowledge to a Gateway's own address, each call routed by its method or its metadata to
the right server through its own tunnel, over h2c; and an HTTPRoute whose backend port is h2c beside an
HTTP/1.1 one in the same table."""

import grpc
import pytest
from gwtest_helpers import GW, apply, condition, fetch, gateway, gateway_address, get, route

from devcluster import add_cluster_ip
from devcluster.stack import wait_for
from edge.grpctesting import CHAT, COUNT, UNARY, EchoServer

pytestmark = pytest.mark.timeout(240)

NS = "grpc"
RPC_HOST, H2_HOST = "rpc.example.com", "h2.example.com"
SERVERS = {"rpc": ("10.96.250.1", "kubernetes.io/h2c"), "rpc-b": ("10.96.250.2", None),   # a GRPCRoute's: h2c
           "h2web": ("10.96.250.3", "kubernetes.io/h2c")}


def grpc_service(name):
    ip, app_protocol = SERVERS[name]
    port = {"name": "grpc", "port": 50051, **({"appProtocol": app_protocol} if app_protocol else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"clusterIP": ip, "selector": {"app": name}, "ports": [port]}}


def grpc_route():
    return {"apiVersion": GW, "kind": "GRPCRoute", "metadata": {"name": "echo", "namespace": NS},
            "spec": {"parentRefs": [{"name": "web"}], "hostnames": [RPC_HOST], "rules": [
                {"matches": [{"method": {"service": "echo.Echo", "method": "Unary"}}],
                 "backendRefs": [{"name": "rpc", "port": 50051}]},
                {"matches": [{"headers": [{"name": "x-pick", "value": "b"}]}],
                 "backendRefs": [{"name": "rpc-b", "port": 50051}]}]}}


def channel(edge, address, authority):
    """h2c with prior knowledge to the edge's HTTP port at the Gateway's address, as grpcio's insecure channel
    speaks it; no retries and no proxy, so what the test sees is what the edge did."""
    return grpc.insecure_channel(f"{address}:{edge.http_port}", options=[
        ("grpc.default_authority", authority), ("grpc.enable_retries", 0), ("grpc.enable_http_proxy", 0)])


def unary_from(edge, address, authority, metadata=()):
    """(the answering server's name, the answer) of one Unary call, or None (for wait_for)."""
    with channel(edge, address, authority) as ch:
        try:
            answer, call = ch.unary_unary(UNARY).with_call(b"hi", timeout=5, metadata=metadata)
        except grpc.RpcError:
            return None
        return dict(call.initial_metadata()).get("x-server"), answer, dict(call.trailing_metadata())


@pytest.fixture(scope="module")
def servers(installed):
    cp = installed.cp
    cp.kubectl("create", "namespace", NS)
    apply(cp, *(grpc_service(name) for name in SERVERS))
    for ip, _ in SERVERS.values():
        add_cluster_ip(ip)
    with EchoServer(SERVERS["rpc"][0], 50051, name="rpc"), EchoServer(SERVERS["rpc-b"][0], 50051, name="rpc-b"), \
            EchoServer(SERVERS["h2web"][0], 50051, name="h2web"):
        yield


def test_grpc_calls_routed_by_method_and_metadata_over_h2c(installed, servers):
    cp, edge = installed.cp, installed.edge
    apply(cp, gateway(NS), grpc_route())
    address = gateway_address(cp, NS, "web")
    got = wait_for("a Unary call answered through the GRPCRoute", lambda: unary_from(edge, address, RPC_HOST),
                   timeout=60)
    assert got == ("rpc", b"unary:hi", {"x-trailer": "kept"})      # trailers intact through the edge

    route_ = get(cp, "grpcroute", NS, "echo")
    assert {t: (condition(route_, t)["status"], condition(route_, t)["reason"]) for t in ("Accepted", "ResolvedRefs")} \
        == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    [listener] = get(cp, "gateway", NS, "web")["status"]["listeners"]
    assert {"group": GW.split("/")[0], "kind": "GRPCRoute"} in listener["supportedKinds"]
    assert listener["attachedRoutes"] == 1

    with channel(edge, address, RPC_HOST) as ch:
        # A server stream to the backend without appProtocol (a GRPCRoute's backend speaks h2c), by metadata.
        call = ch.unary_stream(COUNT)(b"1000", timeout=30, metadata=(("x-pick", "b"),))
        assert [m.decode() for m in call] == [str(i) for i in range(1000)]
        assert dict(call.initial_metadata())["x-server"] == "rpc-b"
        # The method match wins over the metadata match (the spec's precedence: a service and method first).
        assert unary_from(edge, address, RPC_HOST, (("x-pick", "b"),))[0] == "rpc"
        # A bidirectional stream by metadata.
        answers = ch.stream_stream(CHAT)(iter([b"1", b"2", b"3"]), timeout=30, metadata=(("x-pick", "b"),))
        assert list(answers) == [b"echo:1", b"echo:2", b"echo:3"]
        # No rule matches (a method of neither rule, no metadata): the edge's 404, which gRPC clients read as
        # UNIMPLEMENTED.
        with pytest.raises(grpc.RpcError) as missed:
            ch.unary_unary("/echo.Echo/Nothing")(b"x", timeout=30)
        assert missed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert unary_from(edge, address, "other.example.com") is None          # not the route's hostname


def test_an_http_routes_h2c_backend_beside_an_http11_one(installed, servers):
    cp, edge = installed.cp, installed.edge
    h2 = route(NS, [{"backendRefs": [{"name": "h2web", "port": 50051}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/plain"}}],
                     "backendRefs": [{"name": "plain", "port": 8000}]}], name="h2")
    h2["spec"]["hostnames"] = [H2_HOST]
    plain = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain", "namespace": NS},
             "spec": {"clusterIP": "10.96.250.4", "selector": {"app": "plain"}, "ports": [{"port": 8000}]}}
    apply(cp, plain, gateway(NS), h2)
    installed.pods.for_service(NS, "plain")
    address = gateway_address(cp, NS, "web")
    got = wait_for("a gRPC call through the HTTPRoute to its h2c backend",
                   lambda: unary_from(edge, address, H2_HOST), timeout=60)
    assert got[:2] == ("h2web", b"unary:hi")
    resolved = condition(get(cp, "httproute", NS, "h2"), "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("True", "ResolvedRefs")
    status, body = wait_for("the HTTP/1.1 backend of the same table",
                            lambda: (lambda a: a if a[0] == 200 else None)(fetch(edge, address, "/plain", H2_HOST)),
                            timeout=60)
    assert body.startswith("Server: plain")
    assert unary_from(edge, address, RPC_HOST)[0] == "rpc"                 # the GRPCRoute still served beside it
