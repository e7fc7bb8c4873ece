"""Real database servers for tests and benchmarks, started in a temporary directory and torn
down after.

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
import tempfile
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
        if _answers(port, uri):
            return proc, uri
        if time.monotonic() > deadline:
            stop(proc)
            raise TimeoutError(f"milvus-lite did not answer on {uri} in {timeout} s")
        time.sleep(0.2)


def _answers(port: int, uri: str) -> bool:
    """The port accepts connections and a pymilvus client gets an answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
    except OSError:
        return False
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    from index.backends.milvus_backend import GRPC_OPTIONS

    try:
        client = MilvusClient(uri=uri, timeout=5, grpc_options=GRPC_OPTIONS)
        client.list_collections()
        client.close()
        return True
    except MilvusException:
        return False


def pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, if PostgreSQL is installed."""
    for d in PG_BIN_DIRS:
        if (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def start_postgres(timeout: float = 60, parent: str | None = None) -> tuple[Path, str]:
    """initdb + pg_ctl start in a new temporary directory (under ``parent``, default the
    system's), listening only on a Unix socket there. Returns (that directory, libpq URL).
    Runs as the ``postgres`` user when started as root (PostgreSQL refuses to run as root)."""
    bindir = pg_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    # Short: socket paths are limited. ``parent`` must be traversable by the postgres user.
    base = Path(tempfile.mkdtemp(prefix="gunmatch-pg-", dir=parent))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_user = _as_postgres()
    if as_user:
        for p in (base, sock):
            shutil.chown(p, "postgres")
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    _run([*as_user, *initdb, "--no-sync", "-E", "UTF8"])
    opts = f"-c listen_addresses='' -k {sock} -c fsync=off -c max_connections=300"
    log = str(base / "postgres.log")
    _run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            log,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        ]
    )
    return base, f"postgresql://postgres@/postgres?host={sock}"


def stop_postgres(base: Path) -> None:
    """pg_ctl stop (fast) as the user that started it, then remove its directory."""
    bindir = pg_bin()
    cmd = [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"]
    subprocess.run([*_as_postgres(), *cmd], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGINT (the server's clean shutdown), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
