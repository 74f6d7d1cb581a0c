"""A plain TCP relay that never copies a byte through user space: the proxy benchmark's floor for a
relay with a process at each end (scripts/bench/proxy.ts, docs/proxy.md "The floor").

Usage (inside a namespace): python3 splice-relay.py <port> <host> <target port>

Each connection to <port> is relayed to <host>:<target port> by two threads, one per direction, each
moving bytes socket -> pipe -> socket with splice(2) (os.splice, Python 3.10+) through a pipe of its
own, made 1 MiB (F_SETPIPE_SZ) when the system allows. Blocking sockets; the GIL is released while
splice waits. Prints {"port": ..., "pipeBytes": ...} once listening, then one line per connection when
both directions have ended: {"up": bytes towards the target, "down": bytes back} (what it moved, for
the bench to compare with what curl received). Exits when its stdin ends.
"""

import fcntl
import json
import os
import socket
import sys
import threading

PIPE_BYTES = 1 << 20
# fcntl's names exist from Python 3.10; the numbers are Linux's (F_LINUX_SPECIFIC_BASE + 7 and + 8).
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
out = threading.Lock()


def say(line):
    with out:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def make_pipe():
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size for this user: the size it has (64 KiB by default)
    return r, w, fcntl.fcntl(w, F_GETPIPE_SZ)


def move(src, dst, moved, key):
    """src -> dst until src ends, then ends dst's sending side; the bytes moved go in moved[key]."""
    r, w, size = make_pipe()
    total = 0
    try:
        while True:
            n = os.splice(src.fileno(), w, size, flags=os.SPLICE_F_MOVE)
            if n == 0:
                break
            while n > 0:
                m = os.splice(r, dst.fileno(), n, flags=os.SPLICE_F_MOVE)
                n -= m
                total += m
        dst.shutdown(socket.SHUT_WR)
    except OSError as err:
        moved["error"] = f"{key}: {err}"
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    finally:
        os.close(r)
        os.close(w)
        moved[key] = total


def relay(app, host, port):
    try:
        onward = socket.create_connection((host, port))
    except OSError as err:
        app.close()
        say({"error": f"connect to {host}:{port}: {err}"})
        return
    for s in (app, onward):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    moved = {}
    threads = [
        threading.Thread(target=move, args=(app, onward, moved, "up"), daemon=True),
        threading.Thread(target=move, args=(onward, app, moved, "down"), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.close()
    onward.close()
    say(moved)


def main():
    if not hasattr(os, "splice"):
        sys.exit(f"the splice relay needs Python 3.10 or later (os.splice); this is {sys.version.split()[0]}")
    port, host, target = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    server = socket.create_server(("0.0.0.0", port), backlog=64)
    r, w, pipe_bytes = make_pipe()
    os.close(r)
    os.close(w)

    def serve():
        while True:
            app, _ = server.accept()
            threading.Thread(target=relay, args=(app, host, target), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    say({"port": port, "pipeBytes": pipe_bytes})
    sys.stdin.read()


if __name__ == "__main__":
    main()
