"""gRPC through mysocketd: a Service port with `appProtocol: kubernetes.io/h2c` becomes a socket
whose app the edge reaches over h2c, so a real gRPC client reaches a real gRPC server on the
Service's ClusterIP; `mysocket.io/upstream-protocol` overrides the port, in place, and a bad
value is a Warning that keeps what worked."""

import json

import grpc

from devcluster import add_cluster_ip
from devcluster.stack import account_sockets, annotations, wait_for
from edge.grpctesting import UNARY, EchoServer, edge_channel
from lib.services import DNSNAME

ENABLED = {"mysocket.io/enabled": "true"}
PROTOCOL = "mysocket.io/upstream-protocol"


def grpc_service(cluster, name, app_protocol):
    port = {"name": "grpc", "port": 50051, "protocol": "TCP", "appProtocol": app_protocol}
    cluster.cp.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": cluster.ns},
        "spec": {"selector": {"app": name}, "ports": [port]}}))
    return cluster.get(name)


def answers(edge, dnsname):
    with edge_channel(edge, dnsname) as channel:
        try:
            return channel.unary_unary(UNARY)(b"k", timeout=5) == b"unary:k"
        except grpc.RpcError:
            return False


def reasons(cluster, name):
    return {(t, r) for t, r, _ in cluster.events(name)}


def test_an_h2c_port_is_served_over_grpc_and_the_annotation_overrides_it_in_place(cluster, controller, edge,
                                                                                    account):
    svc = grpc_service(cluster, "rpc", "kubernetes.io/h2c")
    ip = svc["spec"]["clusterIP"]
    add_cluster_ip(ip)
    with EchoServer(ip, 50051):
        cluster.annotate("rpc", **ENABLED)
        dnsname = wait_for("rpc's dnsname", lambda: annotations(cluster.get("rpc")).get(DNSNAME))
        assert wait_for("a gRPC answer through the edge", lambda: answers(edge, dnsname))
        [remote] = account_sockets(edge, account)
        assert remote["upstream_protocol"] == "h2c"

        cluster.annotate("rpc", **{PROTOCOL: "grpc"})       # not a protocol: the Warning, and h2c kept
        wait_for("the Warning", lambda: ("Warning", "InvalidAnnotation") in reasons(cluster, "rpc"))
        assert answers(edge, dnsname)

        cluster.annotate("rpc", **{PROTOCOL: "http/1.1"})   # the annotation wins over the port, in place
        wait_for("UpstreamProtocolChanged", lambda: ("Normal", "UpstreamProtocolChanged") in reasons(cluster, "rpc"))
        [remote] = account_sockets(edge, account)
        assert (remote["upstream_protocol"], remote["dnsname"]) == ("http/1.1", dnsname)
        assert not answers(edge, dnsname)                  # HTTP/1.1 to a gRPC server: it cannot answer

        cluster.annotate("rpc", **{PROTOCOL: None})         # back to the port's appProtocol
        assert wait_for("a gRPC answer again", lambda: answers(edge, dnsname))
        assert annotations(cluster.get("rpc"))[DNSNAME] == dnsname
