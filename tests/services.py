"""A real PostgreSQL and a real Redis for the tests, each started once per test session on a free
127.0.0.1 port and stopped at the end (scripts/test.sh installs both from Debian).

    def test_x(postgres_db):        # a fresh, empty database of its own: "postgresql://…/t_3f2a…"
    def test_y(redis_service):      # "redis://127.0.0.1:PORT/0", shared: tests use their own key prefixes
    def test_z(redis_server):       # a Redis of the test's own, empty
    def test_w(own_postgres):       # a PostgreSQL of the test's own: .url(), .pause() stops it, .resume()
    def test_v(own_redis):          # a Redis of the test's own: .url, .pause(), .resume()

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server runs as the
``postgres`` user the Debian package creates, in a directory under /tmp that user owns.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import wait_for
from tests.server_process import free_port


def pg_bindir() -> Path:
    """The directory of initdb/pg_ctl/postgres: Debian keeps them off PATH, under /usr/lib/postgresql/N/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    pytest.fail("PostgreSQL is not installed (scripts/test.sh installs it: apt-get install postgresql)")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, trusting local connections (loopback only)."""

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="clinvk-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres" if os.getuid() == 0 else None  # postgres will not run as root
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.superuser = self.user or pwd.getpwuid(os.getuid()).pw_name

    def _run(self, *argv: str) -> None:
        result = subprocess.run(argv, user=self.user, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def start(self) -> "PostgresServer":
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.superuser,
                  "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server on its data directory and port (again, after :meth:`pause`)."""
        # Unix socket in our own directory (not /var/run/postgresql); fsync off: test data is throwaway.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def pause(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data: every open connection is cut. ``fast`` is a clean
        shutdown (each connection is told), ``immediate`` one like a crash."""
        if mode == "immediate":  # commits are not synced here (see start): make them durable first
            import psycopg
            with psycopg.connect(self.url(), autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URI."""
        import psycopg
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server) -> str:
    """The URI of a fresh database for this test."""
    return postgres_server.create_database()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, for tests that stop and restart it (``pause``/``resume``)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


class RedisServer:
    """A redis-server on a free 127.0.0.1 port with its files in ``workdir``; ``url`` is its URI."""

    def __init__(self, workdir: Path) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            pytest.fail("redis-server is not installed (scripts/test.sh installs it: apt-get install redis-server)")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def resume(self) -> None:
        """Start the server (again, after :meth:`pause`: same port, empty)."""
        self.proc = subprocess.Popen([self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir)
        assert wait_for(self._ready, within=20), "redis-server did not start"

    def pause(self) -> None:
        """Stop the server: every connection to it is cut."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@contextmanager
def running_redis(workdir: Path) -> Iterator[str]:
    """A redis-server on a free 127.0.0.1 port with its files in ``workdir``; yields its URI."""
    with restartable_redis(workdir) as server:
        yield server.url


@contextmanager
def restartable_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    try:
        server.resume()
        yield server
    finally:
        server.pause()


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory) -> Iterator[str]:
    """One Redis for the whole test session."""
    with running_redis(tmp_path_factory.mktemp("redis-service")) as url:
        yield url


@pytest.fixture
def redis_server(tmp_path) -> Iterator[str]:
    """A Redis of this test's own, empty: for tests that count every key in it."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with running_redis(workdir) as url:
        yield url


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A Redis of this test's own, for tests that stop and restart it (``pause``/``resume``)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with restartable_redis(workdir) as server:
        yield server
