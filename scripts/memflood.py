#!/usr/bin/env python3
"""The memory attack of issue 6, against a running informd: what its RSS is at rest, at the
peak of a flood of half-sent request heads, and some seconds after the flood has gone.

Opens CONNECTIONS sockets to the server as fast as it can, sends each HEAD_BYTES of a request
head that never ends (no blank line), holds them all for HOLD seconds, closes them, waits
AFTER seconds, and prints one JSON line with the server's RSS (from /proc/PID/status) in KiB:
idle, peak (VmHWM), and after. Loopback only; needs `ulimit -n` above CONNECTIONS.

    scripts/memflood.py --port 8080 --pid 1234 [--connections 6000] [--head-bytes 32000]
"""

import argparse
import json
import selectors
import socket
import sys
import time


def status(pid):
    """VmRSS and VmHWM of the process, KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=6000)
    parser.add_argument("--head-bytes", type=int, default=32000)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=15.0)
    args = parser.parse_args()

    prefix = b"GET /inform HTTP/1.1\r\nHost: x\r\nX-Pad: "
    head = prefix + b"a" * max(0, args.head_bytes - len(prefix))
    idle = status(args.pid)["VmRSS"]
    samples = []

    sel = selectors.DefaultSelector()
    socks = []
    pending = {}
    refused = 0
    started = time.monotonic()
    for _ in range(args.connections):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((args.host, args.port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)
        pending[s] = memoryview(head)
        sel.register(s, selectors.EVENT_WRITE)
        # Send what the sockets take as we go, so the server sees heads while we connect.
        for key, _ in sel.select(timeout=0):
            push(key.fileobj, pending, sel)
        if len(socks) % 200 == 0:
            samples.append(status(args.pid)["VmRSS"])
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            push(key.fileobj, pending, sel)
        samples.append(status(args.pid)["VmRSS"])
    flood_secs = time.monotonic() - started
    unsent = len(pending)
    for s in socks:
        s.close()
    time.sleep(args.after)
    after = status(args.pid)
    print(
        json.dumps(
            {
                "connections": args.connections,
                "head_bytes": len(head),
                "connect_failed": refused,
                "heads_not_fully_sent": unsent,
                "flood_secs": round(flood_secs, 1),
                "rss_idle_kib": idle,
                "rss_max_sampled_kib": max(samples, default=idle),
                "rss_peak_kib": after["VmHWM"],
                "rss_after_kib": after["VmRSS"],
                "after_secs": args.after,
            }
        )
    )


def push(sock, pending, sel):
    """Sends as much of the socket's remaining head as it takes now."""
    view = pending.get(sock)
    if view is None:
        return
    try:
        sent = sock.send(view)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        # Refused (503 busy, 431, 408) and closed by the server: that is its defence working.
        sent = len(view)
    view = view[sent:]
    if len(view) == 0:
        del pending[sock]
        sel.unregister(sock)
    else:
        pending[sock] = view


if __name__ == "__main__":
    sys.exit(main())
