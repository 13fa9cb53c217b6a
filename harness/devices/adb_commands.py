"""Device shell commands the Android backend sends, and parsers for what they print.

Pure functions (no transport), so the quoting and parsing are tested on their own. Every
path or command that reaches the device shell goes through ``shlex.quote``.

Why a sentinel: adb-shell speaks only ``shell:`` v1, which carries no exit code. The
wrapped command prints its shell's pid first (so a timeout can kill it) and, after the
command ends, a line with a per-call random token and the exit status. The exit line is
only trusted at the very end of the stream, after the command's own output, so a program
cannot forge it by printing a look-alike.
"""

from __future__ import annotations

import posixpath
import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

q = shlex.quote


def new_token() -> str:
    """A per-call random marker (hex, safe inside any shell quoting)."""
    return "EH" + secrets.token_hex(12)


#: Environment variable carrying the call's token into every process the command starts, so a timeout can
#: find the ones that left its process tree (``setsid`` forks, daemons): see :func:`kill_tree_command`.
TAG_VAR = "EDGEHARNESS_RUN"


def wrap_command(command: str, token: str) -> str:
    """``command`` run by a child ``sh`` after printing our pid; its exit status follows on the last line."""
    return (
        f"echo {token}:P:$$; {TAG_VAR}={token} sh -c {q(command)}; "
        f"printf '\\n{token}:X:%s\\n' \"$?\""
    )


@dataclass(frozen=True)
class WrappedOutput:
    """What a wrapped command printed: the remote shell's pid, the command's own output, its exit code."""

    pid: int | None
    output: bytes
    exit_code: int | None


def pid_of(raw: bytes, token: str) -> int | None:
    """The remote pid from the first line of a (possibly partial) wrapped output."""
    match = re.match(re.escape(token.encode()) + rb":P:(\d+)\r?\n", raw)
    return int(match.group(1)) if match else None


def parse_wrapped(raw: bytes, token: str) -> WrappedOutput:
    """Split a wrapped command's stream; ``exit_code`` is None when the end marker is missing (stream cut)."""
    tok = re.escape(token.encode())
    head = re.match(tok + rb":P:(\d+)\r?\n", raw)
    pid = int(head.group(1)) if head else None
    body = raw[head.end():] if head else raw
    tail = re.search(rb"\r?\n" + tok + rb":X:(\d+)\r?\n\Z", body)
    if tail is None:
        return WrappedOutput(pid, body, None)
    return WrappedOutput(pid, body[: tail.start()], int(tail.group(1)))


def kill_tree_command(pid: int, token: str | None = None) -> str:
    """Kill ``pid``'s process group and every descendant (adbd makes each shell a group leader), then, with the
    call's ``token``, every process still carrying it in its environment: a child that left the tree
    (``setsid`` forks on toybox, a daemon reparented to init) keeps the variable and is found in ``/proc``."""
    p = int(pid)
    tagged = ""
    if token is not None:
        if not re.fullmatch(r"[A-Za-z0-9]+", token):
            raise ValueError(f"bad token {token!r}")
        tagged = (f"for d in /proc/[0-9]*; do grep -qF {TAG_VAR}={token} \"$d/environ\" 2>/dev/null "
                  "&& kill -9 \"${d#/proc/}\" 2>/dev/null; done; ")
    return (
        f"kill -9 -- -{p} 2>/dev/null; "
        "k(){ for c in $(pgrep -P \"$1\" 2>/dev/null); do k \"$c\"; done; kill -9 \"$1\" 2>/dev/null; }; "
        f"k {p}; {tagged}true"
    )


# Size, inode, mtime and ctime; %y/%z carry nanoseconds on toybox and GNU stat, so an in-place rewrite is seen.
_STAT = "stat -c '%s %i %y %z'"


def sidecar_path(remote: str) -> str:
    """Where the harness caches a device file's digest (``.NAME.eh-digest`` next to it)."""
    directory, name = posixpath.split(remote)
    return posixpath.join(directory, f".{_short(name)}.eh-digest")


def probe_command(remote: str) -> str:
    """Cheap check before hashing: ``EHSTAT size inode mtime ctime`` of ``remote`` and the cached digest line."""
    f, c = q(remote), q(sidecar_path(remote))
    return (
        f"if [ -f {f} ]; then echo EHSTAT $({_STAT} -- {f} 2>/dev/null); "
        f"[ -f {c} ] && echo EHSIDE $(cat -- {c}); fi; true"
    )


@dataclass(frozen=True)
class Probe:
    """Whether a device file exists, its stat line ('' when ``stat`` is missing), and its still-valid cached digest."""

    exists: bool
    stat: str = ""
    cached: tuple[str, str] | None = None


def parse_probe(output: str) -> Probe:
    """Read :func:`probe_command` output; the cached digest counts only while the file's stat line is unchanged."""
    stat_line = re.search(r"^EHSTAT ?(.*)$", output, re.MULTILINE)
    if stat_line is None:
        return Probe(False)
    stat = stat_line.group(1).strip()
    side = re.search(r"^EHSIDE (sha256|md5) ([0-9a-f]+) (.*)$", output, re.MULTILINE)
    cached = None
    if side and stat and side.group(3).strip() == stat:
        cached = _checked_digest(side.group(1), side.group(2))
    return Probe(True, stat, cached)


def hash_command(remote: str) -> str:
    """Print ``sha256 HEX`` (or ``md5 HEX`` on devices without sha256sum) of ``remote``, and cache it."""
    f, c = q(remote), q(sidecar_path(remote))
    return (
        f"if command -v sha256sum >/dev/null 2>&1; then set -- $(sha256sum < {f}); d=\"sha256 $1\"; "
        f"elif command -v md5sum >/dev/null 2>&1; then set -- $(md5sum < {f}); d=\"md5 $1\"; else exit 0; fi; "
        f"echo \"$d\"; "
        f"echo \"$d $({_STAT} -- {f})\" > {c} 2>/dev/null; true"
    )


def parse_digest(output: str) -> tuple[str, str] | None:
    """``(algorithm, hex)`` from :func:`hash_command` output, or None (no hashing tool on the device)."""
    match = re.search(r"^(sha256|md5) ([0-9a-fA-F]+)\s*$", output, re.MULTILINE)
    return _checked_digest(match.group(1), match.group(2)) if match else None


def _checked_digest(algo: str, digest: str) -> tuple[str, str] | None:
    digest = digest.lower()
    return (algo, digest) if len(digest) == (64 if algo == "sha256" else 32) else None


def _short(name: str) -> str:
    """At most 120 bytes of a file name, so derived names stay under the 255-byte limit."""
    return name.encode("utf-8", "surrogateescape")[:120].decode("utf-8", "ignore")


def temp_path(remote: str, token: str) -> str:
    """A hidden sibling of ``remote`` for an atomic push (same directory, so ``mv`` is a rename)."""
    directory, name = posixpath.split(remote)
    return posixpath.join(directory, f".{_short(name)}.{token}.part")


#: A push temporary untouched for this long belongs to a pusher that died (a live one keeps writing).
STALE_TEMP_MINUTES = 10


def _glob_literal(text: str) -> str:
    """``text`` as a literal inside a ``find -name`` pattern."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def prepare_push_command(remote: str, ours: Sequence[str] = ()) -> str:
    """Create the parent directory of ``remote``; drop temporaries of earlier pushes.

    ``ours`` are temporaries this client left behind (removed now). Another client's are removed only
    when stale: a second harness pushing the same file at the same moment (two CI jobs on one phone,
    pytest-xdist workers) must not lose its temporary in mid-transfer.
    """
    directory, name = posixpath.split(remote)
    d = q(directory or "/")
    pattern = q(_glob_literal(f".{_short(name)}.") + "EH*.part")
    drop_ours = f"rm -f -- {' '.join(q(t) for t in ours)}; " if ours else ""
    return (f"mkdir -p -- {d} && {{ {drop_ours}find {d} -maxdepth 1 -name {pattern} "
            f"-mmin +{STALE_TEMP_MINUTES} -exec rm -f -- {{}} + 2>/dev/null; true; }}")


def finish_push_command(temp: str, remote: str, size_bytes: int, sha256: str, executable: bool) -> str:
    """Rename ``temp`` over ``remote`` only when it holds exactly ``size_bytes`` (else delete it and fail),
    then cache its sha256 (computed on the host, carried by the checksummed transfer)."""
    t, r, c = q(temp), q(remote), q(sidecar_path(remote))
    mode = "755" if executable else "644"
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return (
        f"s=$(wc -c < {t}) && [ $s -eq {int(size_bytes)} ] && chmod {mode} {t} && mv -f -- {t} {r} "
        f"|| {{ rm -f -- {t}; exit 1; }}; "
        f"echo \"sha256 {sha256} $({_STAT} -- {r})\" > {c} 2>/dev/null; true"
    )


def remove_command(path: str) -> str:
    return f"rm -f -- {q(path)}"


_PROP_LINE = re.compile(r"^\[(.*?)\]: \[(.*)\]$")


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` (no arguments) output: ``[key]: [value]`` lines → dict (multi-line values are cut)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        match = _PROP_LINE.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    return props


FACTS_COMMAND = "getprop; echo EH_CORES $(grep -c ^processor /proc/cpuinfo 2>/dev/null)"


def parse_cores(text: str) -> int | None:
    match = re.search(r"^EH_CORES (\d+)\s*$", text, re.MULTILINE)
    return int(match.group(1)) or None if match else None


def announce_pid_command(command: str, token: str) -> str:
    """``command`` run by ``sh`` after printing that shell's pid (the first stdout line), for a shell protocol
    that carries the exit code itself (shell v2): the pid lets a timeout kill the command's process tree."""
    return f"echo {token}:P:$$; {TAG_VAR}={token} exec sh -c {q(command)}"
