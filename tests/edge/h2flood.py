"""An HTTP/2 client that misbehaves on purpose (the `h2` library's framing and HPACK), for the
flood tests: rapid reset, CONTINUATION, SETTINGS and PING floods against the edge's TLS port.

No ordinary client sends these, which is why they are written here; the frames themselves are
hyperframe's and the header blocks hpack's, so only the sequence is ours.
"""

import socket
import ssl

import h2.config
import h2.connection
import hpack
from hyperframe.frame import (ContinuationFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame)

CANCEL = 0x8


class FloodClient:
    """One TLS connection with ALPN h2 to the edge, from its own source address `source` (so the
    edge sees another visitor than the test's well-behaved client)."""

    def __init__(self, edge, name: str, source: str = "127.0.0.2", rcvbuf: int = 0):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:              # a small window: what the edge writes piles up on its side
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.bind((source, 0))
        raw.settimeout(10)
        raw.connect((edge.host, edge.https_port))
        ctx = ssl.create_default_context(cafile=str(edge.ca_cert))
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(raw, server_hostname=name)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.name = name
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.encoder = hpack.Encoder()
        self.next_stream = 1

    def request_head(self, path: str = "/") -> list:
        return [(":method", "GET"), (":scheme", "https"), (":authority", self.name), (":path", path)]

    def rapid_resets(self, count: int, batch: int = 200) -> int:
        """HEADERS then RST_STREAM(CANCEL) for `count` new streams, as fast as the socket takes
        them; how many were sent before the edge closed the connection."""
        block = self.encoder.encode(self.request_head("/reset"))
        sent = 0
        try:
            while sent < count:
                out = bytearray()
                for _ in range(min(batch, count - sent)):
                    sid, self.next_stream = self.next_stream, self.next_stream + 2
                    out += HeadersFrame(sid, block, flags=("END_HEADERS", "END_STREAM")).serialize()
                    out += RstStreamFrame(sid, error_code=CANCEL).serialize()
                self.sock.sendall(out)
                sent += batch
        except OSError:
            pass
        return sent

    def continuation_flood(self, frames: int) -> int:
        """One HEADERS without END_HEADERS, then CONTINUATION frames of 16 KB of headers each,
        never ending the block; how many were sent before the edge closed the connection."""
        sid = self.next_stream
        self.sock.sendall(HeadersFrame(sid, self.encoder.encode(self.request_head()), flags=()).serialize())
        sent = 0
        try:
            for i in range(frames):
                fragment = hpack.Encoder().encode([("x-flood-%d" % i, "z" * 16000)], huffman=False)
                self.sock.sendall(ContinuationFrame(sid, fragment).serialize())
                sent += 1
        except OSError:
            pass
        return sent

    def control_flood(self, kind: str, frames: int, batch: int = 5000) -> int:
        """`frames` SETTINGS or PING frames, never reading the edge's ACKs; how many were sent
        before the edge closed the connection (== frames: it never did)."""
        one = (SettingsFrame(0).serialize() if kind == "settings"
               else PingFrame(0, opaque_data=b"12345678").serialize())
        chunk = one * batch
        sent = 0
        try:
            while sent < frames:
                self.sock.sendall(chunk)
                sent += batch
        except OSError:
            pass
        return sent

    def goaway(self, timeout: float = 10.0):
        """The error code of the edge's GOAWAY, reading what it sent until it closes; None if
        the connection ended without one (or did not end within timeout: then "open")."""
        self.sock.settimeout(timeout)
        buf = bytearray()
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return None
                buf += data
                while len(buf) >= 9:        # frames as they come (hyperframe), the answers skipped
                    frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                    if len(buf) < 9 + length:
                        break
                    if isinstance(frame, GoAwayFrame):
                        frame.parse_body(memoryview(buf[9:9 + length]))
                        return frame.error_code
                    del buf[:9 + length]
        except socket.timeout:
            return "open"
        except OSError:
            return None

    def settings_acks(self, quiet: float = 2.0) -> int:
        """How many SETTINGS ACK frames the edge sent, reading until it is quiet for `quiet` s."""
        self.sock.settimeout(quiet)
        buf, acks = bytearray(), 0
        try:
            while data := self.sock.recv(65536):
                buf += data
                while len(buf) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                    if len(buf) < 9 + length:
                        break
                    acks += isinstance(frame, SettingsFrame) and "ACK" in frame.flags
                    del buf[:9 + length]
        except (socket.timeout, OSError):
            pass
        return acks

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
