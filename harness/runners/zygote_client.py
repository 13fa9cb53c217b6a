"""The host shell's side of the pyrunner zygote: ``python -I -S zygote_client.py SOCKET -- PYTHON SCRIPT ARGS...``.

Imports only built-in modules (a few ms of start-up). Hands ``ARGS`` and its own stdin/stdout/stderr to
the zygote (:mod:`zygote`), prints nothing itself, and exits with the child's exit code. When the zygote
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
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        if b"\nX " in b"\n" + buf and buf.endswith(b"\n"):
            break
    code = 1
    for line in buf.decode("ascii", "replace").splitlines():
        if line.startswith("X "):
            code = int(line[2:]) if line[2:].lstrip("-").isdigit() else 1
    posix._exit(code & 0xFF if code >= 0 else 128 - code)


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
