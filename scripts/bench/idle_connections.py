"""Memory per idle connection of an HTTP server, for scripts/bench-server.sh.

Opens N keep-alive connections to HOST:PORT, sends one `GET PATH` on each and reads its answer,
then, with all of them idle and still open, reads the server's resident memory from /proc and
prints one JSON line: RSS before and after, and the difference per connection. Connections that
the server closed before the reading are counted and reported, never silently included.

    python idle_connections.py --pid PID --port PORT [--connections 1000] [--path /v1/health]
"""

import argparse
import json
import socket
import sys
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    sys.exit(f"no VmRSS for process {pid}")


def read_answer(sock: socket.socket) -> bytes:
    """Reads one whole answer with a Content-Length body (the health routes send one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise ConnectionError(f"answer {status!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the answer's body")
        body += chunk
    return body


def still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/health")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds before each reading")
    args = parser.parse_args()

    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    # One connection first, so that what the first request allocates once is not counted.
    warm = socket.create_connection((args.host, args.port))
    warm.sendall(request)
    read_answer(warm)
    warm.close()
    time.sleep(args.settle)
    before = rss_kib(args.pid)

    # All requests go out before any answer is read, so that the connections open together:
    # a server that closes idle connections after a few seconds (uvicorn: 5 s) keeps them all
    # until the reading.
    started = time.monotonic()
    sockets = []
    for _ in range(args.connections):
        sock = socket.create_connection((args.host, args.port))
        sock.sendall(request)
        sockets.append(sock)
    for sock in sockets:
        read_answer(sock)
    opened_s = time.monotonic() - started
    time.sleep(args.settle)
    after = rss_kib(args.pid)
    open_count = sum(still_open(sock) for sock in sockets)
    for sock in sockets:
        sock.close()
    if open_count == 0:
        sys.exit("the server closed every connection before the reading")
    print(
        json.dumps(
            {
                "connections": args.connections,
                "open_at_reading": open_count,
                "seconds_to_open": round(opened_s, 2),
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": round((after - before) / open_count, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
