"""A throwaway PostgreSQL server for tests of the team store (Debian's ``postgresql`` package).

``PostgresServer`` runs ``initdb`` in a temporary folder and ``postgres`` on 127.0.0.1 at a free
port, its socket in that folder, trust authentication for one user; ``stop`` ends it and removes
the folder. PostgreSQL refuses to run as root, so as root the cluster belongs to ``nobody``
(``runuser``). Users' CI can start one the same way::

    with PostgresServer() as pg:
        dsn = pg.new_database()
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "harness"


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (newest installed version), or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:  # Debian's; /usr/bin/initdb may be postgresql-common's wrapper script
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and (Path(found).parent / "postgres").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A private PostgreSQL cluster; ``dsn`` reaches its ``postgres`` database."""

    def __init__(self, bin_dir: Path | None = None, start_timeout_s: float = 60.0) -> None:
        self.bin_dir = bin_dir or binaries()
        if self.bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries not found (Debian package: postgresql)")
        self.start_timeout_s = start_timeout_s
        self.dir = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        self.port = 0
        self._proc: subprocess.Popen | None = None
        # postgres will not run as root: as root, the server itself runs as nobody (Popen's user/group, no wrapper
        # process: a `runuser` in between once swallowed the stop signal and left the server running, orphaned)
        self._as: dict = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        data = self.dir / "data"
        subprocess.run([str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER,
                        "-E", "UTF8", "--locale=C", "--no-sync"], check=True, capture_output=True, timeout=120,
                       cwd=self.dir, **self._as)
        self.port = _free_port()
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.dir), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "server.log", "wb"),  # noqa: SIM115 - child keeps it
            cwd=self.dir, start_new_session=True, **self._as,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.dir / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                import psycopg

                psycopg.connect(self.dsn, connect_timeout=2).close()
                return self
            except psycopg.Error:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"postgres did not accept connections within {self.start_timeout_s:.0f} s")

    def new_database(self) -> str:
        """A fresh empty database; its URI."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(2)  # SIGINT: fast shutdown
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:  # the server and its backends: their own session's group
                os.killpg(self._proc.pid, 9)
                self._proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
