"""A TCP relay that a test can cut, heal and stall: partitions that are made, not mocked.

Point a client at the relay instead of the server (for example a kubeconfig's
`server:`), then:

- `cut()` closes the listener and every relayed connection at once, as a
  network partition would look to both ends; `heal()` listens again on the
  same port;
- `stall()` freezes every connection open at that moment: nothing more is
  forwarded either way (not even a close), yet both ends stay connected, as
  when a NAT entry or a middlebox silently drops a flow. Only a client's own
  read timeout gets it out. Connections accepted later are relayed normally,
  so a client that gives up and reconnects is served again.

Threads only; everything stops with `close()` or the context manager.
"""

import socket
import threading


class _Pair:
    """One relayed connection: the client's socket and ours to the target."""

    def __init__(self, client, upstream):
        self.sockets = (client, upstream)
        self.stalled = False
        self.ended = 0                      # pipes (of two) that have finished
        self.closed = threading.Event()

    def close(self):
        self.closed.set()
        for sock in self.sockets:
            _close(sock)


class Relay:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.accepted = 0                   # connections accepted so far (tests compare before/after)
        self._listener = None
        self._pairs = set()
        self._lock = threading.Lock()

    def start(self):
        self.heal()
        return self

    def heal(self):
        listener = socket.create_server((self.listen_host, self.port), reuse_port=False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="relay-accept", daemon=True).start()

    def cut(self):
        """Stop accepting and drop every relayed connection, both sides."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            pair.close()

    def stall(self):
        """Stop forwarding on every connection open now, keeping them open; return how many."""
        with self._lock:
            pairs = [p for p in self._pairs if not p.closed.is_set()]
            for pair in pairs:
                pair.stalled = True
        return len(pairs)

    def close(self):
        self.cut()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return                          # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                if self._listener is not listener:
                    pair.close()
                    return
                self._pairs.add(pair)
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(pair, a, b), name="relay-pipe", daemon=True).start()

    def _pipe(self, pair, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if pair.stalled:
                    pair.closed.wait()          # hold the bytes (or the close) until cut()/close()
                    return
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self._lock:
            pair.ended += 1
            done = pair.ended == 2
            if done:
                self._pairs.discard(pair)
        if done:
            pair.close()                        # both ways finished: nothing left to stall


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
