"""The host shell's side of the pyrunner zygote: ``python -I -S zygote_client.py SOCKET -- PYTHON SCRIPT ARGS...``.

Imports only built-in modules (a few ms of start-up). Hands ``ARGS`` and its own stdin/stdout/stderr to
the zygote (:mod:`zygote`), prints nothing itself, and exits with the child's exit code. While the child
runs, ``<socket folder>/<client pid>.child`` holds its pid (the host's memory poller follows it there). When the zygote
cannot be reached, it execs the fresh command ``PYTHON SCRIPT ARGS`` instead (same output, same result).
"""

import _socket
import posix
import sys


def main() -> None:
    sock_path, sep, fresh = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or len(fresh) < 2:
        sys.stderr.write("usage: zygote_client.py SOCKET -- PYTHON SCRIPT ARGS...\n")
        posix._exit(1)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        payload = ("[" + ",".join(_json_str(a) for a in fresh[2:]) + "]").encode("utf-8")
        s.connect(sock_path)
        fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2))
        s.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    except (OSError, UnicodeError):  # no zygote, or an argument it cannot take (a lone surrogate)
        s.close()
        posix.execv(fresh[0], fresh)  # no zygote: the fresh process, as without one
    buf = b""
    told = False
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        if not told and buf.startswith(b"P ") and b"\n" in buf:
            told = True
            _tell_child(sock_path, buf[2:buf.index(b"\n")])
        if b"\nX " in b"\n" + buf and buf.endswith(b"\n"):
            break
    code = 1
    for line in buf.decode("ascii", "replace").splitlines():
        if line.startswith("X "):
            code = int(line[2:]) if line[2:].lstrip("-").isdigit() else 1
    if told:
        try:
            posix.unlink(_child_file(sock_path))
        except OSError:
            pass
    posix._exit(code & 0xFF if code >= 0 else 128 - code)


def _child_file(sock_path: str) -> str:
    """Where this client names its forked child (beside the socket), for the host's memory poller."""
    return sock_path.rpartition("/")[0] + "/" + str(posix.getpid()) + ".child"


def _tell_child(sock_path: str, pid: bytes) -> None:
    try:
        fd = posix.open(_child_file(sock_path), posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC, 0o600)
        posix.write(fd, pid)
        posix.close(fd)
    except OSError:
        pass


def _json_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


if __name__ == "__main__":
    main()
