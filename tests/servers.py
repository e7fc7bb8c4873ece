"""Real database servers for tests, started in a temporary directory and torn down after.

Milvus: the ``milvus-lite`` command line runs a Milvus-protocol gRPC server as a separate
process on 127.0.0.1, reached through pymilvus by ``http://127.0.0.1:PORT`` exactly as a
standalone or cluster Milvus would be. PostgreSQL: the Debian package's ``initdb`` and
``pg_ctl`` run a private cluster listening only on a Unix socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PG_BIN_DIRS = tuple(f"/usr/lib/postgresql/{v}/bin" for v in (17, 16, 15))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milvus_lite_command() -> str | None:
    """The ``milvus-lite`` executable beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "milvus-lite"
    return str(beside) if beside.exists() else shutil.which("milvus-lite")


def start_milvus(data_dir: Path, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start ``milvus-lite server`` on a free port; returns (process, uri) once it answers."""
    exe = milvus_lite_command()
    if exe is None:
        raise FileNotFoundError("milvus-lite is not installed (pip install milvus-lite)")
    port = free_port()
    log = open(data_dir.parent / "milvus-lite.log", "wb")  # noqa: SIM115 - lives with the server
    proc = subprocess.Popen(
        [exe, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus-lite exited with {proc.returncode}; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, uri
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise TimeoutError(f"milvus-lite did not listen on {uri} in {timeout} s") from None
            time.sleep(0.1)


def pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, if PostgreSQL is installed."""
    for d in PG_BIN_DIRS:
        if (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def start_postgres(base: Path, timeout: float = 60) -> tuple[Path, str]:
    """initdb + pg_ctl start in ``base``, listening only on a Unix socket there.

    Returns (data dir, libpq URL). Runs as the ``postgres`` user when started as root
    (PostgreSQL refuses to run as root)."""
    bindir = pg_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    data, sock = base / "pgdata", base / "pgsock"
    sock.mkdir(parents=True)
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses='' -k {sock} -c fsync=off -c max_connections=200"
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(base / "postgres.log"),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return data, f"postgresql://postgres@/postgres?host={sock}"


def stop_postgres(data: Path) -> None:
    """pg_ctl stop (fast), as the user that started it."""
    bindir = pg_bin()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGINT (the server's clean shutdown), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
