"""Runs inside the device's namespaces (as their holder process): opens sockets in the device's network.

Standalone (stdlib only, started as ``python3 -I -S -c SOURCE FD``): it brings the device's loopback
up, prints ``READY PID``, then answers one JSON request per SEQPACKET message on fd ``FD`` with
the socket it opened (``SCM_RIGHTS``) or ``{"ok": false, "errno": N, "error": "..."}``. Listening
sockets bind the device's loopback only. It exits when its stdin closes (the device stopped).
"""

import array
import fcntl
import json
import os
import select
import socket
import struct
import sys

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _open(request: dict) -> socket.socket:
    op = request.get("op")
    if op in ("connect_tcp", "listen_tcp"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if op == "connect_tcp":
                sock.settimeout(5)
                sock.connect(("127.0.0.1", int(request["port"])))
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", int(request["port"])))
                sock.listen(16)
        except BaseException:
            sock.close()
            raise
        return sock
    if op in ("connect_unix", "listen_unix"):
        name = str(request["name"])
        address = "\0" + name if request.get("abstract") else name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if op == "connect_unix":
                sock.settimeout(5)
                sock.connect(address)
            else:
                sock.bind(address)
                sock.listen(16)
        except BaseException:
            sock.close()
            raise
        return sock
    raise OSError(22, f"unknown request {op!r}")


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    os.chdir("/")
    _loopback_up()
    print("READY", os.getpid(), flush=True)
    while True:
        ready, _, _ = select.select([0, control], [], [])
        if 0 in ready and not os.read(0, 1):
            return
        if control not in ready:
            continue
        message = control.recv(65536)
        if not message:
            return
        try:
            sock = _open(json.loads(message))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            number = getattr(exc, "errno", None) or 22
            text = getattr(exc, "strerror", None) or str(exc)
            control.send(json.dumps({"ok": False, "errno": number, "error": text}).encode())
            continue
        with sock:
            sock.setblocking(True)
            rights = array.array("i", [sock.fileno()])
            control.sendmsg([b'{"ok": true}'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])


if __name__ == "__main__":
    main()
