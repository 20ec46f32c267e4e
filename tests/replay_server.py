"""What the replay servers (Kubernetes, GitHub) share: a loopback socket and a quiet uvicorn."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn


def loopback_socket() -> tuple[socket.socket, int]:
    """A TCP socket bound to 127.0.0.1 on a port the OS picks, and that port.

    IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    it Nagle holds each small body behind the headers for a delayed ACK (40 ms a request).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return sock, port


def quiet_server(app: Any, **options: Any) -> uvicorn.Server:
    """uvicorn for a test peer: no lifespan, no websockets, no access log, a 1 s graceful stop."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        access_log=False,
        timeout_graceful_shutdown=1,
        **options,
    )
    return uvicorn.Server(config)
