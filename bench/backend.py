"""One process that plays the pods of many Services at once, for the benchmarks.

devcluster.standin starts one Python process per pod. For 300 Services that is
300 interpreters (several GB of memory and a minute of CPU on a small machine),
which would compete with the controller whose CPU and memory the benchmark is
measuring. Here one asyncio process binds every Service's ClusterIP:port and
answers each GET with the Service's name, so a probe can also tell that the
edge sent it to the right Service. It runs in its own process so that the
probes (in the benchmark process) never share a GIL with it.

It is driven over stdin/stdout, one line per command:

    bind <ip> <port> <name>   ->  "OK" once it listens ("ERR <reason>" if not)

EOF on stdin (the benchmark went away) stops it. Addresses must already exist
on `lo` (bench.stack adds them, inside the private network namespace).

    python -m bench.backend
"""

import asyncio
import sys


def _response(name):
    body = (name + "\n").encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _serve(name, reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_response(name))
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    servers = []
    while line := await reader.readline():
        parts = line.decode().split()
        if len(parts) != 4 or parts[0] != "bind":
            print("ERR expected: bind <ip> <port> <name>", flush=True)
            continue
        _, ip, port, name = parts
        try:
            servers.append(await asyncio.start_server(
                lambda r, w, n=name: _serve(n, r, w), ip, int(port), backlog=512, reuse_address=True))
            print("OK", flush=True)
        except OSError as e:
            print(f"ERR {e}", flush=True)
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
