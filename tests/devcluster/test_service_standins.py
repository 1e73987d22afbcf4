"""Services get ClusterIPs, and stand-in pods bound to them answer like pods behind kube-proxy."""

import http.client
import ipaddress
import socket

from kubernetes import client

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/16")


def _create_service(api_client, namespace: str, name: str, port: int) -> client.V1Service:
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(selector={"app": name}, ports=[
            client.V1ServicePort(port=port, target_port=port, protocol="TCP")]))
    return client.CoreV1Api(api_client).create_namespaced_service(namespace, body)


def _http_get(ip: str, port: int) -> str:
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def test_service_gets_cluster_ip_and_standin_answers(api_client, namespace, standins):
    service = _create_service(api_client, namespace, "web", 8000)
    ip = service.spec.cluster_ip
    assert ipaddress.ip_address(ip) in SERVICE_RANGE

    [pod] = standins.for_service(namespace, "web")
    assert (pod.ip, pod.port) == (ip, 8000)
    socket.create_connection((ip, 8000), timeout=5).close()
    assert _http_get(ip, 8000) == f"Server: {pod.name}\n"


def test_two_standins_on_one_cluster_ip_both_get_connections(api_client, namespace, standins):
    ip = _create_service(api_client, namespace, "web", 8000).spec.cluster_ip
    pods = standins.for_service(namespace, "web", count=2)
    expected = {f"Server: {p.name}\n" for p in pods}

    seen = set()
    for _ in range(50):
        seen.add(_http_get(ip, 8000))
        if seen == expected:
            break
    assert seen == expected


def test_tcp_echo_standin(api_client, namespace, standins):
    ip = _create_service(api_client, namespace, "echo", 9000).spec.cluster_ip
    standins.for_service(namespace, "echo", tcp_echo=True)
    with socket.create_connection((ip, 9000), timeout=5) as conn:
        conn.sendall(b"ping\n")
        assert conn.recv(64) == b"ping\n"


def test_stopped_standin_no_longer_answers(api_client, namespace, standins):
    ip = _create_service(api_client, namespace, "web", 8000).spec.cluster_ip
    [pod] = standins.for_service(namespace, "web")
    standins.stop(pod)
    try:
        socket.create_connection((ip, 8000), timeout=5).close()
    except ConnectionRefusedError:
        return
    raise AssertionError("connection accepted after the only stand-in stopped")
