"""Socket set-up shared by the receivers: binding with clear errors, buffers."""

from __future__ import annotations

import os
import socket
import sys

from gateway.config import parse_address
from gateway.errors import ListenError

# The socket module does not export it; the value is Linux's <asm/socket.h>.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)


def bind_socket(what: str, address: str, kind: socket.SocketKind, rcvbuf: int) -> socket.socket:
    """A bound non-blocking socket with a receive buffer of about `rcvbuf`.

    SO_RCVBUFFORCE goes past net.core.rmem_max where the process may (root);
    otherwise SO_RCVBUF is capped by the kernel and the effective size is
    whatever `getsockopt` reports afterwards.
    """
    host, port = parse_address(what, address)
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        raise ListenError(what, address, exc.strerror or str(exc)) from None
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        set_rcvbuf(sock, rcvbuf)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(what, address, (exc.strerror or str(exc)).lower()) from None
    return sock


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for a `size`-byte receive buffer; return what the kernel granted."""
    try:
        if SO_RCVBUFFORCE is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def kernel_drops(sock: socket.socket) -> int:
    """The kernel's drop counter for a UDP socket, from /proc/net/udp{,6}.

    The socket is found by inode; 0 when the table cannot be read.
    """
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return 0
    table = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
    try:
        with open(table, encoding="ascii") as f:
            for line in f:
                cols = line.split()
                if len(cols) > 12 and cols[9] == inode:
                    return int(cols[-1])
    except OSError:
        pass
    return 0
