"""A throwaway PostgreSQL cluster for tests: ``initdb`` in a temporary directory, loopback only.

::

    cluster = PostgresCluster.create()      # initdb in a fresh temporary directory
    cluster.start()                          # a free port on 127.0.0.1, its socket in the directory
    ...                                      # use cluster.url("postgres")
    cluster.stop()                           # keeps the data: start() again brings it back
    cluster.destroy()                        # stops it and removes the directory

The binaries (``initdb``, ``pg_ctl``) are found on ``PATH`` or under
``/usr/lib/postgresql/<version>/bin`` (Debian's layout), newest first.

PostgreSQL refuses to run as root. When this process is root (CI containers usually are), the
cluster's directory is handed to an unprivileged account (``nobody``, else ``postgres``) and
``initdb`` and ``pg_ctl`` run as that account, started through :class:`subprocess.Popen`'s own
``user``/``group`` arguments, so no ``su``/``runuser`` is needed. The directory is made by
:func:`tempfile.mkdtemp` directly under the system's temporary directory (whose ancestors that
account can traverse), not under a private test directory.

Authentication is ``trust`` for the superuser ``stepup`` over loopback TCP and the socket in the
cluster's own directory; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

__all__ = ["PostgresCluster", "find_binaries", "free_port"]

SUPERUSER = "stepup"
_UNPRIVILEGED_ACCOUNTS = ("nobody", "postgres")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: from ``PATH``, else the newest
    ``/usr/lib/postgresql/*/bin``; None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def _unprivileged_account() -> pwd.struct_passwd:
    for name in _UNPRIVILEGED_ACCOUNTS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(
        "PostgreSQL refuses to run as root and no unprivileged account (nobody, postgres) exists to run it"
    )


def _traversable_temp_dir() -> str:
    """A temporary directory every account can pass through (the system's, unless TMPDIR points
    somewhere private, as it may under root; then /tmp or /var/tmp)."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):  # noqa: S108 - fallbacks only
        path = Path(candidate).resolve()
        if path.is_dir() and all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents)):
            return str(path)
    raise RuntimeError("no temporary directory an unprivileged account can reach; set TMPDIR to one")


@attrs.define
class PostgresCluster:
    """One PostgreSQL cluster in its own temporary directory. Build it with :meth:`create`."""

    directory: Path
    bin_dir: Path
    port: int = attrs.field(factory=free_port)
    #: The account the server runs as when this process is root (None otherwise).
    run_as: pwd.struct_passwd | None = None
    #: Extra ``-c name=value`` server settings.
    settings: dict[str, str] = attrs.field(factory=dict)
    _initialised: bool = attrs.field(default=False, init=False)

    @classmethod
    def create(cls, *, settings: dict[str, str] | None = None) -> PostgresCluster:
        """A cluster in a new temporary directory, not yet initialised or started."""
        bin_dir = find_binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql)")
        run_as = _unprivileged_account() if os.geteuid() == 0 else None
        directory = Path(tempfile.mkdtemp(prefix="stepup-pg-", dir=_traversable_temp_dir() if run_as else None))
        if run_as is not None:
            os.chown(directory, run_as.pw_uid, run_as.pw_gid)
        return cls(directory=directory, bin_dir=bin_dir, run_as=run_as, settings=dict(settings or {}))

    # -- paths and addresses ------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres", **query: str) -> str:
        """A ``postgresql://`` URL for ``database`` over loopback TCP."""
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}" + (f"?{tail}" if tail else "")

    @property
    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        return pid_file.exists() and self._ctl("status", check=False).returncode == 0

    # -- processes ------------------------------------------------------------------------

    def _run(self, args: list[str], *, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(  # noqa: S603 - fixed argument lists of PostgreSQL's own tools
            args,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.directory,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed with {result.returncode}:\n{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args], check=check)

    def initialise(self) -> None:
        """``initdb``: a UTF-8 cluster whose superuser ``stepup`` is trusted over loopback."""
        if self._initialised or (self.data_dir / "PG_VERSION").exists():
            self._initialised = True
            return
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        self._initialised = True

    def start(self, timeout: float = 60.0) -> None:
        """Initialise if needed and start on 127.0.0.1:``port``; returns once it accepts connections."""
        self.initialise()
        self.socket_dir.mkdir(exist_ok=True)
        if self.run_as is not None:
            os.chown(self.socket_dir, self.run_as.pw_uid, self.run_as.pw_gid)
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            **self.settings,
        }
        opts = " ".join(f"-c {name}={value}" for name, value in options.items())
        self._ctl("-l", str(self.log_path), "-o", opts, "-w", "-t", str(int(timeout)), "start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port} within {timeout} s")

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server (fast shutdown: clients are disconnected); the data stays. With
        ``immediate`` every server process quits at once, mid-statement, as in a crash (nothing
        is answered or committed on the way down; the next start recovers from the log)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._ctl("-m", "immediate" if immediate else "fast", "-w", "stop", check=False)

    def destroy(self) -> None:
        """Stop the server and remove the whole directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
