"""The production arrangement of deploy/, whole, on this machine's loopback interface.

A PostgreSQL primary (``initdb`` in a temporary folder, configured with
deploy/postgres/primary.conf, pg_hba.conf and setup-primary.sql), a streaming replica made by
deploy/postgres/make-replica.sh (``pg_basebackup -R``), the bundled data loaded with
``geo-service db migrate`` and ``geo-service db load data/``, N ``geo-service serve`` instances
started with the ExecStart and environment of deploy/systemd/geo-service@.service and
deploy/geo-service.env (and restarted when they die, like ``Restart=always``), and nginx with
deploy/nginx/geo-service.conf in front. Only the ports, paths and passwords differ from
production. Everything stops, and the folder goes, at the end.

    bash deploy/loopback.sh              # start, print the addresses, wait for Ctrl-C
    bash deploy/loopback.sh --drill      # ... then run the failure drill (deploy/drill.py)

As root, PostgreSQL runs as the ``postgres`` user and nginx's workers as ``www-data``; as
another user, everything runs as that user. Needs Debian's postgresql-15-postgis-3 and nginx.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "geo-service@.service"
ENV_FILE = DEPLOY / "geo-service.env"
NGINX_SITE = DEPLOY / "nginx" / "geo-service.conf"
PG = DEPLOY / "postgres"
SLOT = "replica1"
# One load generator is one client address: the service's per-client limit stays on (as in
# production) but far above what one machine can send.
LOOPBACK_RATE_LIMIT = "100000000/minute"

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1 (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def pg_bindir() -> Path:
    """PostgreSQL's programs: ``PG_BINDIR``, else Debian's newest /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_basebackup").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise MissingTool("PostgreSQL (apt-get install postgresql-15-postgis-3)")
    return found[-1]


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not path:
        raise MissingTool("nginx (apt-get install nginx)")
    return path


class MissingTool(RuntimeError):
    """A program the arrangement needs is not installed."""


def is_root() -> bool:
    return os.geteuid() == 0


def _as_postgres(cmd: Sequence[str | Path]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run as the postgres user."""
    argv = [str(c) for c in cmd]
    return ["runuser", "-u", "postgres", "--", *argv] if is_root() else argv


def _run(
    cmd: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(str(c) for c in cmd)} exited {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return proc.stdout


def _give_to_postgres(path: Path) -> None:
    if is_root():
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a systemd EnvironmentFile (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


@dataclass(frozen=True)
class Unit:
    """What the loopback takes from the systemd unit: its command, environment and restart delay."""

    exec_start: list[str]
    environment: dict[str, str]
    restart_s: float

    @classmethod
    def read(cls, path: Path = UNIT) -> Unit:
        exec_start: list[str] = []
        environment: dict[str, str] = {}
        restart_s = 1.0
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                exec_start = shlex.split(line.removeprefix("ExecStart="))
            elif line.startswith("Environment="):
                key, value = line.removeprefix("Environment=").split("=", 1)
                environment[key] = value
            elif line.startswith("RestartSec="):
                restart_s = float(line.removeprefix("RestartSec=").rstrip("s"))
        if not exec_start:
            raise ValueError(f"{path}: no ExecStart=")
        return cls(exec_start, environment, restart_s)

    def argv(self, port: int, env: dict[str, str]) -> list[str]:
        """ExecStart for instance ``port``: this checkout's geo-service, %i and ${VAR} filled."""
        geo = Path(sys.executable).parent / "geo-service"
        out = [str(geo)]
        for arg in self.exec_start[1:]:
            arg = arg.replace("%i", str(port))
            out.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], arg))
        return out


class PgCluster:
    """One PostgreSQL cluster in a folder of its own, on 127.0.0.1:``port``."""

    def __init__(self, home: Path, name: str, port: int, bindir: Path) -> None:
        self.home = home
        self.name = name
        self.port = port
        self.bindir = bindir
        self.data = home / name
        self.log = home / f"{name}.log"
        self.sockets = home / "run"

    def initdb(self) -> None:
        _run(
            _as_postgres(
                [
                    self.bindir / "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8",
                    "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "-N",
                ]
            ),
            cwd=self.home,
        )  # fmt: skip

    def configure_primary(self) -> None:
        """deploy/postgres/primary.conf included, and only deploy/postgres/pg_hba.conf's lines
        for TCP (so the arrangement fails if they do not let the service and replica in)."""
        conf = self.data / "geo-primary.conf"
        shutil.copyfile(PG / "primary.conf", conf)
        _give_to_postgres(conf)
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\ninclude 'geo-primary.conf'\n")
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n" + (PG / "pg_hba.conf").read_text(encoding="utf-8"),
            encoding="utf-8",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
        _run(
            _as_postgres(
                [
                    self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                    "-o", options, "start",
                ]
            ),
            cwd=self.home,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        _run(
            _as_postgres([self.bindir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"]),
            cwd=self.home,
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def psql(
        self, script: str, db: str = "postgres", variables: dict[str, str] | None = None
    ) -> str:
        args: list[str | Path] = [
            self.bindir / "psql", "-X", "-q", "-At", "-h", self.sockets, "-p", str(self.port),
            "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
        ]  # fmt: skip
        for key, value in (variables or {}).items():
            args += ["-v", f"{key}={value}"]
        return _run(_as_postgres([*args, "-f", "-"]), cwd=self.home, stdin=script)

    def url(self, password: str, user: str = "geo", db: str = "geo") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{db}"


class Instance:
    """``geo-service serve`` on one port, restarted after it exits (systemd's Restart=always)."""

    def __init__(
        self, port: int, argv: list[str], env: dict[str, str], log: Path, restart_s: float
    ):
        self.port = port
        self.argv = argv
        self.env = env
        self.log = log
        self.restart_s = restart_s
        self.url = f"http://127.0.0.1:{port}"
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._supervise, name=f"instance-{port}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            return subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._spawn()
                self.starts += 1
            self.proc.wait()
            self._stopping.wait(self.restart_s)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"instance {self.port} not started")
        return self.proc.pid

    def kill(self) -> int:
        """``kill -9`` the serving process (the supervisor starts it again); its pid."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until /readyz answers 200 (RuntimeError with the log's tail past timeout)."""
        t0 = time.monotonic()
        starts = self.starts
        while not self.ready():
            crashing = self.starts - starts >= 3  # exits at start-up, again and again
            if crashing or time.monotonic() - t0 > timeout_s:
                tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                why = "keeps exiting" if crashing else f"not ready in {timeout_s:.0f} s"
                raise RuntimeError(f"instance {self.port} {why}:\n{tail}")
            time.sleep(0.2)
        return time.monotonic() - t0

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def site_config(site: str, backends: Sequence[int], port: int, logs: Path) -> str:
    """deploy/nginx/geo-service.conf with this arrangement's instances, port and log files.
    Every rewrite must match, so a change of the production file cannot go untested."""
    servers = re.findall(r"^ *server 127\.0\.0\.1:800\d (.*);$", site, flags=re.M)
    if not servers:
        raise ValueError("no `server 127.0.0.1:800N ...;` lines in the upstream block")
    lines = "".join(f"    server 127.0.0.1:{p} {servers[0]};\n" for p in backends)
    site, n = re.subn(r"(?:^ *server 127\.0\.0\.1:800\d .*;\n)+", lines, site, count=1, flags=re.M)
    rewrites = [
        (r"^    listen 80;$", f"    listen 127.0.0.1:{port};"),
        (r"^    listen \[::\]:80;\n", ""),
        (r"/var/log/nginx/geo-service\.access\.log", str(logs / "access.log")),
        (r"/var/log/nginx/geo-service\.error\.log", str(logs / "error.log")),
    ]
    for pattern, repl in rewrites:
        site, k = re.subn(pattern, repl, site, flags=re.M)
        n += k
    if n != 1 + len(rewrites):
        raise ValueError("deploy/nginx/geo-service.conf changed: the loopback rewrites do not fit")
    return site


class Nginx:
    """Debian's nginx in the foreground (``daemon off``), in a folder of its own."""

    def __init__(self, home: Path, port: int, backends: Sequence[int]) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.access_log = home / "access.log"
        self.error_log = home / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o755)
        site = site_config(NGINX_SITE.read_text(encoding="utf-8"), backends, port, home)
        (home / "geo-service.conf").write_text(site, encoding="utf-8")
        temp = "\n".join(
            f"    {kind}_temp_path {home / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user www-data;\n" if is_root() else ""
        (home / "nginx.conf").write_text(
            f"{user}worker_processes auto;\ndaemon off;\npid {home / 'nginx.pid'};\n"
            f"error_log {self.error_log} warn;\nevents {{\n    worker_connections 1024;\n}}\n"
            f"http {{\n{temp}\n    access_log off;\n    include {home / 'geo-service.conf'};\n}}\n",
            encoding="utf-8",
        )

    def _argv(self, *extra: str) -> list[str]:
        conf = str(self.home / "nginx.conf")
        return [nginx_binary(), "-p", str(self.home), "-c", conf, "-e", str(self.error_log), *extra]

    def start(self, timeout_s: float = 30) -> None:
        _run(self._argv("-t", "-q"))
        log = (self.home / "nginx.out").open("ab")
        self.proc = subprocess.Popen(
            self._argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # master and workers: our own session
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Loopback:
    """The whole arrangement; ``start()`` then ``stop()`` (also after a failed start)."""

    instances: int = 3
    data: Path = REPO / "data"
    access_log: bool = False  # the instances log each request (who they think the client is)
    extra_env: dict[str, str] = field(default_factory=dict)
    say: Say = _quiet
    root: Path = field(init=False)
    primary: PgCluster = field(init=False)
    replica: PgCluster = field(init=False)
    servers: list[Instance] = field(init=False, default_factory=list)
    nginx: Nginx = field(init=False)
    admin_key: str = field(init=False, default="")
    geo_password: str = field(init=False, default_factory=lambda: secrets.token_hex(12))
    env: dict[str, str] = field(init=False, default_factory=dict)
    _extra_nginx: list[Nginx] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        bindir = pg_bindir()
        nginx_binary()
        self.root = Path(tempfile.mkdtemp(prefix="geo-loopback-"))
        self.root.chmod(0o755)  # PostgreSQL and nginx's workers run as other users
        pg_home = self.root / "pg"
        pg_home.mkdir()
        (pg_home / "run").mkdir()
        _give_to_postgres(pg_home)
        _give_to_postgres(pg_home / "run")
        ports = free_ports(3 + self.instances)
        self.primary = PgCluster(pg_home, "primary", ports[0], bindir)
        self.replica = PgCluster(pg_home, "replica", ports[1], bindir)
        self._nginx_port = ports[2]
        self._ports = ports[3:]

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def database_url(self) -> str:
        return self.primary.url(self.geo_password)

    @property
    def replica_url(self) -> str:
        return self.replica.url(self.geo_password)

    def _timed(self, what: str, fn: Callable[[], object]) -> None:
        t0 = time.monotonic()
        fn()
        self.say(f"{what} ({time.monotonic() - t0:.1f} s)")

    def start(self) -> None:
        rep_password = secrets.token_hex(12)
        self._timed("primary: initdb", self.primary.initdb)
        self.primary.configure_primary()
        self._timed(f"primary: started on 127.0.0.1:{self.primary.port}", self.primary.start)
        self.primary.psql(
            (PG / "setup-primary.sql").read_text(encoding="utf-8"),
            variables={"geo_password": self.geo_password, "replicator_password": rep_password},
        )
        env = {**os.environ, "PGPASSWORD": rep_password, "PG_BINDIR": str(self.primary.bindir)}

        def replicate() -> None:
            _run(
                _as_postgres(
                    [
                        "bash", "-s", "--", "127.0.0.1", str(self.primary.port),
                        str(self.replica.data), SLOT,
                    ]
                ),
                env=env,
                cwd=self.primary.home,
                stdin=(PG / "make-replica.sh").read_text(encoding="utf-8"),
            )  # fmt: skip
            self.replica.start()

        # The replica is copied while the data loads: the load reaches it by streaming.
        failed: list[BaseException] = []

        def replica_side() -> None:
            try:
                self._timed(
                    f"replica: pg_basebackup -R, started on 127.0.0.1:{self.replica.port}",
                    replicate,
                )
            except BaseException as exc:
                failed.append(exc)

        copying = threading.Thread(target=replica_side, name="replica")
        copying.start()
        try:
            self.env = self._instance_env()
            cli = [str(Path(sys.executable).parent / "geo-service")]
            self._timed(
                "geo-service db migrate",
                lambda: _run([*cli, "db", "migrate"], env=self.env, cwd=REPO),
            )
            self._timed(
                f"geo-service db load {self.data}",
                lambda: _run(
                    [*cli, "db", "load", str(self.data)], env=self.env, cwd=REPO, timeout=600
                ),
            )
        finally:
            copying.join()
        if failed:
            raise failed[0]
        unit = Unit.read()
        logs = self.root / "logs"
        logs.mkdir()
        t0 = time.monotonic()
        for port in self._ports:
            argv = unit.argv(port, self.env)
            if self.access_log:
                argv.append("--access-log")
            inst = Instance(port, argv, self.env, logs / f"instance-{port}.log", unit.restart_s)
            self.servers.append(inst)
            inst.start()
        keys = subprocess.run(
            [*cli, "keys", "add", "loopback admin", "--role", "admin"],
            env=self.env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        found = re.search(r"gsk_[A-Za-z0-9_-]+", keys.stdout + keys.stderr)
        if not found:
            raise RuntimeError(f"geo-service keys add printed no key:\n{keys.stdout}{keys.stderr}")
        self.admin_key = found.group(0)
        for inst in self.servers:
            inst.wait_ready(timeout_s=240)
        self.say(
            f"{len(self.servers)} instances ready on ports "
            f"{', '.join(str(p) for p in self._ports)} ({time.monotonic() - t0:.1f} s)"
        )
        self.nginx = Nginx(self.root / "nginx", self._nginx_port, self._ports)
        self._timed(f"nginx on {self.nginx.url}", self.nginx.start)

    def _instance_env(self) -> dict[str, str]:
        """The environment of an instance: geo-service.env and the unit's Environment= lines,
        with this arrangement's database, photo folder and base URL."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("GEO_SERVICE_") and k not in ("FORWARDED_ALLOW_IPS", "PGPASSWORD")
        }
        media = self.root / "media"
        media.mkdir()
        return {
            **base,
            **env_file(ENV_FILE),
            **Unit.read().environment,
            "GEO_SERVICE_DATABASE_URL": self.database_url,
            "GEO_SERVICE_MEDIA_DIR": str(media),
            "GEO_SERVICE_PUBLIC_BASE_URL": f"http://127.0.0.1:{self._nginx_port}",
            "GEO_SERVICE_RATE_LIMIT": LOOPBACK_RATE_LIMIT,
            "PYTHONUNBUFFERED": "1",  # the logs are files: each line as it happens
            **self.extra_env,
        }

    def balancer(self, backends: Sequence[int]) -> Nginx:
        """Another nginx with the same site file, in front of ``backends`` only (benchmarks)."""
        n = len(self._extra_nginx)
        nginx = Nginx(self.root / f"nginx-{n}", free_ports(1)[0], backends)
        self._extra_nginx.append(nginx)
        nginx.start()
        return nginx

    def stop(self) -> None:
        """Stop everything that was started, then remove the folder; never raises."""
        steps: list[Callable[[], None]] = [n.stop for n in self._extra_nginx]
        if hasattr(self, "nginx"):
            steps.append(self.nginx.stop)
        steps += [s.stop for s in self.servers]
        for cluster in (self.replica, self.primary):
            if cluster.running():
                steps.append(lambda c=cluster: c.stop("immediate"))  # type: ignore[misc]
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                self.say(f"while stopping: {exc}")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Loopback:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def loopback(**kwargs: object) -> Iterator[Loopback]:
    lb = Loopback(**kwargs)  # type: ignore[arg-type]
    with lb:
        yield lb


def _summary(lb: Loopback) -> str:
    inst = "\n".join(f"  instance  {s.url}  (log {s.log})" for s in lb.servers)
    return (
        f"nginx     {lb.url}   (access log {lb.nginx.access_log})\n{inst}\n"
        f"primary   {lb.database_url}\nreplica   {lb.replica_url}\n"
        f"admin key {lb.admin_key}\n"
        f"try:      curl '{lb.url}/api/v1/grids/locate?lon=119.16&lat=36.71'"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="deploy/loopback.sh", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--drill", action="store_true", help="run the failure drill, then stop")
    parser.add_argument(
        "--hold", type=float, default=None, help="stay up this many seconds (default: until Ctrl-C)"
    )
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        print(f"[loopback] {msg}", flush=True)

    # SIGTERM (and SIGHUP) stop everything like Ctrl-C does.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    try:
        with loopback(instances=args.instances, say=say) as lb:
            print(_summary(lb), flush=True)
            if args.drill:
                from deploy.drill import print_report, run_drill

                print_report(run_drill(lb, say=say))
            elif args.hold is not None:
                time.sleep(args.hold)
            else:
                say("running; Ctrl-C stops everything")
                threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        say("stopped, folder removed")


if __name__ == "__main__":
    main()
