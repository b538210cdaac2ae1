"""The README runs as pasted: every ``curl`` and ``.venv/bin/geo-service`` command of its code
blocks is run with bash, in README order, against a live ``geo-service serve`` on a private copy
of the bundled data (issue 12: the tour's ``service=修车`` got a plain-text 400 from the server).

Each command must exit 0; a curl must get a 2xx with a non-empty body that parses (JSON when the
answer says JSON, a PNG for ``qr.png``); a CLI command that writes ``--out`` must write it. The
commands run as one session: shell variables assigned by one (``KEY=$(...)``, ``ID=$(...)``)
reach the next, files land in one temporary folder. Only the commands in ``SKIPPED`` are not
run, each with its reason; a README command that fails is named in the failure.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyogrio
import pytest

from tests.backends import copy_data

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CLI = REPO / ".venv" / "bin" / "geo-service"
README_CLI = ".venv/bin/geo-service"
README_HOST = "127.0.0.1:8000"

# README commands not run (matched by substring), and why. Everything else is run.
SKIPPED = {
    "synth --grids 100000": "builds a 100,000-grid synthetic city: minutes (bench/ uses it)",
    "serve --host 0.0.0.0": "the service itself: this test runs `geo-service serve` on 127.0.0.1",
    "db migrate": "PostGIS block (its `export GEO_SERVICE_DATABASE_URL` names a server of the "
    "reader's; tests/conftest.py migrates a test database)",
    "db load data/": "PostGIS block (tests/backends.seed_postgis loads the data the same way)",
    "serve          # start as many": "PostGIS block: a second service on the database",
    "import stalls stalls.csv": "replaces the stalls with the reader's own CSV (its versions would "
    'change under the If-Match W/"1" examples below); tests/test_cli.py imports a CSV in GCJ-02',
    "maps build                    # every map": "builds every grid's map: about 2 minutes",
    "maps build --basemap osm": "builds every grid's map twice: minutes",
}
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$", re.S)
KEY_PLACEHOLDER = "KEY='gsk_…'"
KEY_ID_PLACEHOLDER = "3fa2c41b0d"
SECRET = re.compile(r"gsk_([0-9a-f]{10})_[A-Za-z0-9_-]+")
CURL_WRAP = "curl -sS --fail-with-body -w '\\n%{http_code} %{content_type}\\n'"


@dataclass(frozen=True)
class Command:
    line: int  # first line in README.md
    text: str  # as written (continuations kept)

    @property
    def id(self) -> str:
        first = " ".join(self.text.split())
        return f"L{self.line}: {first[:70]}"


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: a JSON body spread over lines
        return False
    return True


def readme_commands() -> list[Command]:
    """Every shell command of README.md's ``sh`` code blocks, continuations joined."""
    commands: list[Command] = []
    in_block = False
    pending: list[str] = []
    start = 0
    for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```sh"
            pending = []
            continue
        if not in_block:
            continue
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = n
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            commands.append(Command(start, text))
            pending = []
    return commands


def _runs_something(text: str) -> bool:
    return "curl " in text or README_CLI in text or ASSIGNMENT.match(text) is not None


COMMANDS = [c for c in readme_commands() if _runs_something(c.text)]


def _skip_reason(cmd: Command) -> str | None:
    return next((why for key, why in SKIPPED.items() if key in cmd.text), None)


def _free_port() -> int:
    """8000 as in the README when it is free, else any free port (substituted in the URLs)."""
    for port in (8000, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise AssertionError("no free port")


@dataclass
class Session:
    cwd: Path
    env: dict[str, str]
    host: str
    variables: dict[str, str] = field(default_factory=dict)
    last_key_id: str | None = None
    admin_key: str | None = None

    def prepare(self, text: str) -> str:
        text = text.replace(README_CLI, shlex.quote(str(CLI))).replace(README_HOST, self.host)
        if KEY_ID_PLACEHOLDER in text and self.last_key_id:
            text = text.replace(KEY_ID_PLACEHOLDER, self.last_key_id)  # the id keys add printed
        return text

    def bash(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-o", "pipefail", "-c", script],
            cwd=self.cwd,
            env={**self.env, **self.variables},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _reference_files(cwd: Path, data: Path) -> None:
    """The files the README's reader brings: a grid survey as GeoPackage."""
    grids = pyogrio.read_dataframe(data / "grids.geojson")
    for name in ("my_grids.gpkg", "survey.gpkg"):
        pyogrio.write_dataframe(grids, cwd / name)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "geo-service serve exited"
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("geo-service serve did not become ready")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("readme")
    data = copy_data(root / "data")
    cwd = root / "work"
    cwd.mkdir()
    _reference_files(cwd, data)
    port = _free_port()
    host = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_SERVICE_")}
    env.update(
        GEO_SERVICE_DATA_DIR=str(data),
        GEO_SERVICE_RATE_LIMIT_ENABLED="false",
        GEO_SERVICE_PUBLIC_BASE_URL=f"http://{host}",
        GEO_SERVICE_PORT=str(port),
    )
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(f"http://{host}", proc)
        yield Session(cwd, env, host)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _output_file(tokens: list[str]) -> str | None:
    for flag in ("-o", "--out", "--output"):
        if flag in tokens:
            return tokens[tokens.index(flag) + 1]
    return None


def _check_body(where: str, body: bytes, content_type: str) -> None:
    assert body.strip(), f"{where}: empty answer"
    if "json" in content_type:
        json.loads(body)
    elif content_type.startswith("image/png"):
        assert body.startswith(b"\x89PNG"), f"{where}: not a PNG"


def run_curl(s: Session, cmd: Command, script: str) -> None:
    tokens = shlex.split(script, comments=True)
    res = s.bash(CURL_WRAP + script.strip()[len("curl") :])
    where = f"README line {cmd.line}: {cmd.text}"
    *body_lines, status_line = res.stdout.rstrip("\n").split("\n")
    status, _, content_type = status_line.partition(" ")
    detail = f"{where}\n-> exit {res.returncode}, HTTP {status}\n{res.stdout[-2000:]}{res.stderr}"
    assert res.returncode == 0 and status.startswith("2"), detail
    out = _output_file(tokens)
    if out is not None:
        body = (s.cwd / out).read_bytes()
    else:
        body = "\n".join(body_lines).encode()
        if "-i" in tokens:  # headers, a blank line, the body (text mode made CRLF LF)
            head, _, rest = body.partition(b"\n\n")
            assert head.startswith(b"HTTP/"), detail
            body = rest
    _check_body(where, body, content_type)


def run_cli(s: Session, cmd: Command, script: str) -> None:
    res = s.bash(script)
    where = f"README line {cmd.line}: {cmd.text}"
    assert res.returncode == 0, f"{where}\n-> exit {res.returncode}\n{res.stdout}{res.stderr}"
    if found := SECRET.search(res.stdout + res.stderr):
        s.last_key_id = found.group(1)
        if "--role admin" in script:
            s.admin_key = found.group(0)
    tokens = shlex.split(script, comments=True)
    if (out := _output_file(tokens)) is not None:
        path = s.cwd / out
        assert path.exists() and (path.is_dir() or path.stat().st_size), f"{where}: no {out}"
    if "--json" in tokens:
        json.loads(res.stdout)


def run_assignment(s: Session, cmd: Command, name: str, script: str) -> None:
    where = f"README line {cmd.line}: {cmd.text}"
    if cmd.text.startswith(KEY_PLACEHOLDER):  # "from keys add": the admin key made above
        assert s.admin_key, f"{where}: no admin key was added before"
        s.variables[name] = s.admin_key
        return
    res = s.bash(f'{script}\nprintf "%s" "${name}"')
    value = res.stdout.rsplit("\n", 1)[-1]
    assert res.returncode == 0 and value, f"{where}\n-> exit {res.returncode}\n{res.stderr}"
    s.variables[name] = value


def test_the_readme_has_commands_and_skips_only_what_it_lists() -> None:
    assert sum("curl " in c.text for c in COMMANDS) >= 35
    assert sum(README_CLI in c.text for c in COMMANDS) >= 15
    for key in SKIPPED:  # a stale entry would silently skip a new command
        assert any(key in c.text for c in COMMANDS), f"SKIPPED entry matches nothing: {key}"


def test_no_readme_url_has_raw_non_ascii() -> None:
    """uvicorn (httptools) refuses a request line with raw UTF-8: 400 "Invalid HTTP request"."""
    for cmd in COMMANDS:
        for url in re.findall(r"https?://[^\s'\"]+", cmd.text):
            assert url.isascii(), f"README line {cmd.line}: percent-encode {url}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_readme_command_runs_as_pasted(cmd: Command, session: Session) -> None:
    if (why := _skip_reason(cmd)) is not None:
        pytest.skip(why)
    script = session.prepare(cmd.text)
    if m := ASSIGNMENT.match(cmd.text.strip()):
        run_assignment(session, cmd, m.group(1), script)
    elif script.lstrip().startswith("curl "):
        run_curl(session, cmd, script)
    else:
        assert str(CLI) in script, cmd.text
        run_cli(session, cmd, script)
