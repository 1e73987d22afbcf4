"""A real gRPC server and client (grpcio) for the gRPC tests (tests/edge, tests/controller),
with no generated code: the methods take and give raw bytes, so nothing here needs protoc.
Tests only: grpcio comes from requirements-dev.txt, and nothing in the edge imports this.

The server (`EchoServer`) listens on `host` (127.0.0.1; a Service's ClusterIP and port in
the controller's tests) with h2c (grpcio's insecure port) and has
  /echo.Echo/Unary         the request back, prefixed, with a trailer `x-trailer: kept`
                           (b"forge": and `mysocket-edge: no-tunnel`, the edge's voice);
                           b"fail" aborts with NOT_FOUND and a message (a status in trailers)
  /echo.Echo/Count         server streaming: b"<n>" or b"<n>:<seconds>" -> n messages
                           b"0", b"1", ... (a pause of <seconds> before each one)
  /echo.Echo/Chat          bidirectional: each request back as b"echo:" + request
The client (`edge_channel`) reaches it through the edge's TLS port by a socket's name.
"""

import time
from concurrent import futures

import grpc

UNARY, COUNT, CHAT = "/echo.Echo/Unary", "/echo.Echo/Count", "/echo.Echo/Chat"


def _unary(request: bytes, context) -> bytes:
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing here")
    trailers = (("x-trailer", "kept"),)
    if request == b"forge":             # an app that tries to speak as the edge in its trailers
        trailers += (("mysocket-edge", "no-tunnel"),)
    context.set_trailing_metadata(trailers)
    return b"unary:" + request


def _count(request: bytes, context):
    n, _, pause = request.decode().partition(":")
    for i in range(int(n)):
        if pause:
            time.sleep(float(pause))
        if not context.is_active():
            return
        yield str(i).encode()


def _chat(requests, context):
    for request in requests:
        yield b"echo:" + request


def _named(name: str, handler):
    """handler, answering first with the initial metadata `x-server: name` (which server answered)."""
    def named(request, context):
        context.send_initial_metadata((("x-server", name),))
        return handler(request, context)
    return named


class EchoServer:
    """A grpcio server on host:port (h2c; port 0: any, then `port` says which); stopped on exit.
    With a `name`, every answer's initial metadata says `x-server: <name>` (routing tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, name: str = ""):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        wrap = (lambda h: _named(name, h)) if name else (lambda h: h)
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(wrap(_unary)),
            "Count": grpc.unary_stream_rpc_method_handler(wrap(_count)),
            "Chat": grpc.stream_stream_rpc_method_handler(wrap(_chat)),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
        self.port = self.server.add_insecure_port("{}:{}".format(host, port))

    def __enter__(self) -> "EchoServer":
        self.server.start()
        return self

    def __exit__(self, *exc) -> bool:
        self.server.stop(grace=None).wait(5)
        return False


def edge_channel(edge, dnsname: str) -> grpc.Channel:
    """A TLS channel to the edge's HTTPS port, trusting the edge's CA, for `dnsname` (SNI and
    :authority); no retries and no proxy, so what the test sees is what the edge did."""
    creds = grpc.ssl_channel_credentials(root_certificates=edge.ca_cert.read_bytes())
    return grpc.secure_channel("{}:{}".format(edge.host, edge.https_port), creds, options=[
        ("grpc.ssl_target_name_override", dnsname), ("grpc.default_authority", dnsname),
        ("grpc.enable_retries", 0), ("grpc.enable_http_proxy", 0)])
