"""The listening sockets of `serve`, bound before anything is announced or started.

A port in use, a port that needs privileges or an address this machine does not have is reported
in one line, before the gateway prints its URL or starts an upstream; uvicorn then serves the
sockets bound here.
"""

from __future__ import annotations

import errno
import socket


class ListenError(Exception):
    """The address cannot be listened on; the message says what to do."""


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of `host` (both of `localhost`), at `port` (0: a free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r}: {exc.strerror}; pass --host or set gateway.host") from None
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in infos))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses[:1] if port == 0 else addresses:
            # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
            # without it every answer waits ~40 ms for a delayed ACK (Nagle's algorithm).
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} is in use: pass --port N or set gateway.port") from None
        if exc.errno == errno.EACCES:
            raise ListenError(f"port {port} needs privileges on this machine: pass --port N above 1023 "
                              "or set gateway.port") from None
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sockets


def bound_port(sockets: list[socket.socket]) -> int:
    return int(sockets[0].getsockname()[1])
