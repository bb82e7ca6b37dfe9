"""A throw-away PostgreSQL + PostGIS cluster for tests and benchmarks.

``start_cluster(base_dir)`` runs ``initdb`` into ``base_dir/data``, starts the server with ``pg_ctl`` on a free
port of 127.0.0.1 (trust authentication, Unix socket in ``base_dir``), creates the database ``yzt`` with the
PostGIS extension and returns a :class:`PgCluster` whose ``.url`` the PostGIS store opens
(``postgresql://postgres@127.0.0.1:PORT/yzt``). ``.stop()`` shuts it down (``pg_ctl stop -m fast``).

PostgreSQL refuses to run as root: when we are root, the directory is handed to the ``postgres`` OS user and
the server binaries run through ``runuser -u postgres --``. The cluster is tuned for throw-away use
(``fsync=off``, no full-page writes): never point it at data you want to keep.

Binaries are looked up in ``$YZT_PG_BIN``, then ``pg_config --bindir``, then ``/usr/lib/postgresql/*/bin``
(newest first), then ``$PATH``. On Debian/Ubuntu: ``apt-get install postgresql-15-postgis-3``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from layers.errors import StoreError

INSTALL_HINT = "install PostgreSQL with PostGIS: apt-get install postgresql-15-postgis-3"
DATABASE = "yzt"
SUPERUSER = "postgres"
OS_USER = "postgres"
START_TIMEOUT = 60  # seconds
PG_ROOT = Path("/usr/lib/postgresql")  # Debian / Ubuntu: one bin/ per major version


def find_pg_bin() -> Path:
    """Directory holding initdb / pg_ctl / postgres; StoreError with the install hint if there is none."""
    candidates: list[Path] = []
    if os.environ.get("YZT_PG_BIN"):
        candidates.append(Path(os.environ["YZT_PG_BIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.TimeoutExpired):
            pass

    def version_key(p: Path):
        try:
            return float(p.parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(PG_ROOT.glob("*/bin"), key=version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for cand in candidates:
        if all((cand / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise StoreError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")


def _share_dir(bin_dir: Path) -> Path | None:
    pg_config = bin_dir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True)
        if out.returncode == 0:
            return Path(out.stdout.strip())
    guess = Path("/usr/share/postgresql") / bin_dir.parent.name
    return guess if guess.is_dir() else None


def check_postgis(bin_dir: Path) -> None:
    """StoreError with the install hint when the PostGIS extension files are not installed."""
    share = _share_dir(bin_dir)
    if share is None or not (share / "extension" / "postgis.control").is_file():
        raise StoreError(f"the PostGIS extension is not installed for PostgreSQL in {bin_dir}; {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(cmd: list[str], *, as_postgres: bool, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    if as_postgres:
        cmd = ["runuser", "-u", OS_USER, "--", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        raise StoreError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from None
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise StoreError(f"{' '.join(cmd)} failed (exit {out.returncode}): {' | '.join(detail[-5:])}")
    return out


@dataclass
class PgCluster:
    """A running throw-away cluster. Use ``.url`` for the ``yzt`` database, ``.stop()`` when done."""

    base_dir: Path
    port: int
    bin_dir: Path
    as_postgres: bool
    database: str = DATABASE
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create another database with PostGIS; return its URL."""
        _create_database(self.url_for("postgres"), name)
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut). Safe to call twice."""
        if self._stopped:
            return
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
             as_postgres=self.as_postgres)
        self._stopped = True

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _create_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(admin_url.rsplit("/", 1)[0] + "/" + name, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def start_cluster(base_dir: Path, port: int | None = None) -> PgCluster:
    """initdb + start a PostGIS cluster under ``base_dir`` (created if absent) on ``port`` (free if None).

    Raises StoreError naming the failing step; with an install hint when the binaries or PostGIS are missing.
    """
    bin_dir = find_pg_bin()
    check_postgis(bin_dir)
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    as_postgres = _is_root()
    if as_postgres:
        try:
            pw = pwd.getpwnam(OS_USER)
        except KeyError:
            raise StoreError(f"running as root but there is no {OS_USER!r} OS user to run PostgreSQL; "
                             f"{INSTALL_HINT}, or run as an unprivileged user") from None
        for path in [base_dir, *base_dir.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
        probe = subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(base_dir)])
        if probe.returncode != 0:
            raise StoreError(f"the {OS_USER!r} OS user cannot write to {base_dir} (a parent directory is "
                             "private?); start the cluster under a world-traversable directory such as /tmp")
    data_dir = base_dir / "data"
    if not (data_dir / "PG_VERSION").is_file():
        _run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
              "--locale=C.UTF-8", "--no-sync", "--no-instructions"], as_postgres=as_postgres)
    port = port or free_port()
    options = " ".join([
        f"-p {port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={base_dir}",
        "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
        "-c max_connections=50", "-c shared_buffers=256MB", "-c work_mem=64MB",
        "-c maintenance_work_mem=256MB", "-c max_wal_size=2GB", "-c wal_level=minimal",
        "-c max_wal_senders=0",
    ])
    _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(base_dir / "server.log"), "-o", options,
          "-w", "-t", str(START_TIMEOUT), "start"], as_postgres=as_postgres)
    cluster = PgCluster(base_dir=base_dir, port=port, bin_dir=bin_dir, as_postgres=as_postgres)
    try:
        _wait_ready(cluster.url_for("postgres"))
        _create_database(cluster.url_for("postgres"), cluster.database)
    except Exception:
        cluster.stop()
        raise
    return cluster


def _wait_ready(url: str, timeout: float = START_TIMEOUT) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise StoreError(f"PostgreSQL at {url} did not accept connections: {exc}") from None
            time.sleep(0.1)
