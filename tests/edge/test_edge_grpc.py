"""gRPC end to end: a real grpcio client -> the edge (TLS, HTTP/2) -> a real OpenSSH tunnel ->
a real grpcio server speaking h2c, for a socket whose `upstream_protocol` is "h2c"."""

import queue
import socket
import time

import grpc
import pytest

from edge.grpctesting import CHAT, COUNT, UNARY, EchoServer, edge_channel
from edge.testing import EdgeProcess
from edgetest_helpers import forward_argv, make_account, new_socket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def echo():
    with EchoServer() as server:
        yield server


@pytest.fixture
def grpc_socket(edge, account, ssh, echo):
    """An http socket with upstream_protocol h2c, tunnelled to the gRPC server: (socket, ssh)."""
    sock = new_socket(edge, account, upstream_protocol="h2c")
    assert sock["upstream_protocol"] == "h2c"
    port = sock["tunnels"][0]["local_port"]
    proc = ssh.start(forward_argv(edge, account, port, echo.port))
    edge.wait_forward(port)
    return sock, proc


@pytest.fixture
def channel(edge, grpc_socket):
    with edge_channel(edge, grpc_socket[0]["dnsname"]) as ch:
        yield ch


def test_unary_with_its_trailers_and_statuses_intact(channel):
    unary = channel.unary_unary(UNARY)
    answer, call = unary.with_call(b"hello", timeout=30)
    assert answer == b"unary:hello"
    assert call.code() == grpc.StatusCode.OK
    assert ("x-trailer", "kept") in tuple(call.trailing_metadata())
    _, call = unary.with_call(b"forge", timeout=30)         # only the edge speaks as the edge
    assert [k for k, _ in call.trailing_metadata()] == ["x-trailer"]
    with pytest.raises(grpc.RpcError) as failed:
        unary(b"fail", timeout=30)
    assert (failed.value.code(), failed.value.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing here")


def test_a_server_stream_of_ten_thousand_messages(channel):
    call = channel.unary_stream(COUNT)(b"10000", timeout=60)
    assert [m.decode() for m in call] == [str(i) for i in range(10000)]
    assert call.code() == grpc.StatusCode.OK


def test_a_bidirectional_stream_answers_each_message_before_the_next_is_sent(channel):
    """Full duplex: the next request is only sent once the last one's echo came back, so a
    proxy that waited for the end of the request body would hang here (and time out)."""
    outbox = queue.Queue()

    def requests():
        while (item := outbox.get(timeout=30)) is not None:
            yield item

    call = channel.stream_stream(CHAT)(requests(), timeout=60)
    seen = []
    for i in range(50):
        outbox.put(b"m%d" % i)
        seen.append(next(call))
    outbox.put(None)
    assert list(call) == []
    assert seen == [b"echo:m%d" % i for i in range(50)]
    assert call.code() == grpc.StatusCode.OK


def test_a_tunnel_lost_mid_stream_ends_the_stream_unavailable(channel, grpc_socket):
    """The ssh client dies while the server streams: the visitor's stream ends with
    grpc-status UNAVAILABLE (which clients may retry), not INTERNAL and not a hang."""
    _, proc = grpc_socket
    call = channel.unary_stream(COUNT)(b"100000:0.01", timeout=60)
    got = [next(call) for _ in range(5)]
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    proc.kill()
    with pytest.raises(grpc.RpcError) as ended:
        for _ in call:
            pass
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value


def test_quiet_grpc_streams_outlive_the_timeouts_meant_for_http1(tmp_path, ssh, echo, backend):
    """Every HTTP/1.1 timeout at 1 s: a server stream whose messages (the first too, so its
    answer begins late) come 2.5 s apart, and a bidirectional stream whose client is quiet for
    2.5 s, both finish; an HTTP/1.1 request body as quiet is cut, so the timeouts are on."""
    quick = ("--body-read-timeout", "1", "--response-header-timeout", "1", "--idle-timeout", "1")
    with EdgeProcess(tmp_path / "edge", admin=True, extra_args=quick) as edge:
        acct = make_account(edge, tmp_path)
        rpc, web = new_socket(edge, acct, upstream_protocol="h2c"), new_socket(edge, acct)
        for sock, port in ((rpc, echo.port), (web, backend("web").port)):
            ssh.start(forward_argv(edge, acct, sock["tunnels"][0]["local_port"], port))
            edge.wait_forward(sock["tunnels"][0]["local_port"])
        with edge_channel(edge, rpc["dnsname"]) as channel:
            assert list(channel.unary_stream(COUNT)(b"3:2.5", timeout=60)) == [b"0", b"1", b"2"]
            outbox = queue.Queue()
            call = channel.stream_stream(CHAT)(iter(lambda: outbox.get(timeout=30), None), timeout=60)
            outbox.put(b"before")
            assert next(call) == b"echo:before"
            time.sleep(2.5)                                 # the client says nothing for a while
            outbox.put(b"after")
            assert next(call) == b"echo:after"
            outbox.put(None)
            assert list(call) == [] and call.code() == grpc.StatusCode.OK
        with socket.create_connection((edge.host, edge.http_port), timeout=10) as conn:
            conn.sendall("POST / HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\r\nhalf.".format(
                web["dnsname"]).encode())
            head = conn.makefile("rb").readline()           # the edge cuts it once the body stalls
            assert head.split()[1][:1] in (b"4", b"5"), head    # (without the cut: a read timeout here)


def test_the_upstream_protocol_is_part_of_the_contract(edge, account, ssh, echo):
    """Absent means http/1.1 (old clients unchanged); PATCH changes it in place (the name stays);
    a bad value is a 400 that says what is allowed."""
    sock = new_socket(edge, account)
    assert sock["upstream_protocol"] == "http/1.1"
    port = sock["tunnels"][0]["local_port"]
    ssh.start(forward_argv(edge, account, port, echo.port))
    edge.wait_forward(port)
    bad = edge.api("PATCH", "/socket/" + sock["socket_id"], {"upstream_protocol": "h3"}, token=account.token)
    assert bad.status == 400 and "http/1.1, h2c" in bad.body["error_message"]
    with edge_channel(edge, sock["dnsname"]) as ch:
        with pytest.raises(grpc.RpcError):          # HTTP/1.1 to a gRPC server: no answer it can use
            ch.unary_unary(UNARY)(b"x", timeout=30)
    patched = edge.api("PATCH", "/socket/" + sock["socket_id"], {"upstream_protocol": "h2c"},
                       token=account.token)
    assert patched.status == 200, patched.body
    assert (patched.body["upstream_protocol"], patched.body["dnsname"]) == ("h2c", sock["dnsname"])
    assert patched.body["protected_socket"] is False
    with edge_channel(edge, sock["dnsname"]) as ch:
        assert ch.unary_unary(UNARY)(b"x", timeout=30) == b"unary:x"
    got = edge.api("GET", "/socket/" + sock["socket_id"], token=account.token)
    assert got.body["upstream_protocol"] == "h2c"
