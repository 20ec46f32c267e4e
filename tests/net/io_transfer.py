"""TCP transfer helper for the I/O net tests: ``serve ADDR PORT`` / ``send ADDR PORT SIZE``.

Each side prints the SHA-256 of the bytes it moved; the test compares them. Bounded by timeouts.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys


def serve(addr: str, port: int) -> None:
    with socket.create_server((addr, port)) as listener:
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            digest = hashlib.sha256()
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
    print(digest.hexdigest())


def send(addr: str, port: int, size: int) -> None:
    digest = hashlib.sha256()
    with socket.create_connection((addr, port), timeout=30) as conn:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            conn.sendall(chunk)
            digest.update(chunk)
            left -= len(chunk)
    print(digest.hexdigest())


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
