"""HTTP parity suite: a black-box check of a runner through its HTTP apps and its database.

The tests talk to the runner only over HTTP (`urllib`) and look at its PostgreSQL database only
through `psql`; expected values come from the specs (`../shared/spec/`, the reference Python
runner's behaviour) and the rulings in `DECISIONS.md`, with the deliberate differences of
`docs/differences.md`. Standard library only.

Two modes:

* **Local (default).** Needs `DATABASE_URL` (a server where databases may be created; without
  it every test skips). The suite builds `janitor-runner` (in cargo's target directory)
  (`cargo build --quiet --bin janitor-runner`), creates a fresh database, migrates it
  (`janitor-runner migrate`), writes a configuration with its own campaigns
  (`parity-generic`, a generic build with a command; `parity-empty`, `default_empty` and
  `force_build`), a committer, and `logs_location`/`artifact_location` in a temporary
  directory, and serves the two apps on free ports of 127.0.0.1 with
  `--public-vcs-location http://127.0.0.1:9/vcs` (nothing listens on port 9, so the
  upstream and store probes fail at once and stay out of the picture). When `REDIS_URL` is
  set, the runner uses that Redis under a unique `--redis-prefix` (the mirrored store: claims
  in PostgreSQL, a copy and pub/sub in Redis); unset it to test the PostgreSQL store alone. The runner's output goes to `runner.log` in the session's temporary
  directory. At the end the runner is stopped and the database dropped.
  `JR_PARITY_SKIP_BUILD=1` uses the existing binary without running cargo.

      .venv/bin/python -m pytest -q tests/parity/http

* **External.** `--runner-url URL --dsn DSN` targets a runner that is already running (for
  instance the Python runner in shadow mode) and its database, and starts nothing.
  `--public-url URL` names its worker app (the worker-app tests skip without it);
  `--campaign NAME` (default `lintian-fixes`) is a campaign its configuration defines, with a
  `command`; `--logs-location DIR` is its `logs_location` directory, to read stored logs back
  (those checks skip without it); `--flavour python` expects the reference runner's answers
  where `docs/differences.md` lists a deliberate difference (tests of fixed crashes then skip,
  and errors the spec calls "plain" are read as plain text). The Python runner needs a
  `--public-vcs-location` that answers (a server giving 404 for every path will do): one
  where nothing listens makes its every assignment a 500. No test assumes an empty
  database: every test makes its own codebases (unique names), assigns with the `codebase`
  filter so that it only ever takes its own queue items, and only looks at its own rows. The
  public-app tests insert one worker (`parity-<hex>`, password hashed with pgcrypto) into the
  `worker` table and leave it there. Tests that need a configuration the suite wrote (exact
  build configuration, committer variables, store URLs, a `default_empty` campaign) skip.

      .venv/bin/python -m pytest -q tests/parity/http --runner-url http://127.0.0.1:9911 \\
          --public-url http://127.0.0.1:9919 --dsn postgresql://... --campaign lintian-fixes

Markers: `differs("...")` marks a test of a deliberate difference from the Python runner
(docs/differences.md or DECISIONS.md); it skips with `--flavour python`. `local_only("...")`
marks a test that needs the configuration written by the local mode.
"""

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jr_http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
def _target_directory() -> str:
    """Where cargo puts its builds (CARGO_TARGET_DIR or a cargo config may move it)."""
    import json
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(meta)["target_directory"]


def _binary() -> str:
    return os.path.join(_target_directory(), "debug", "janitor-runner")
LOCAL_CAMPAIGN = "parity-generic"
LOCAL_EMPTY_CAMPAIGN = "parity-empty"
LOCAL_COMMITTER = "Parity Bot <parity@example.org>"
LOCAL_VCS_BASE = "http://127.0.0.1:9/vcs"

CONFIG = """\
# Written by tests/parity/http/conftest.py.
logs_location: "{logs}"
artifact_location: "{artifacts}"
committer: "{committer}"

campaign {{
  name: "{campaign}"
  command: "echo default-command"
  branch_name: "parity"
  generic_build {{
    chroot: "parity-chroot"
  }}
}}

campaign {{
  name: "{empty_campaign}"
  command: "true"
  branch_name: "parity-empty"
  default_empty: true
  force_build: true
  skip_setup_validation: true
  generic_build {{}}
}}
"""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "differs(reason): a deliberate difference from the Python runner "
        "(docs/differences.md); skipped with --flavour python")
    config.addinivalue_line(
        "markers", "local_only(reason): needs the configuration the local mode writes")


def pytest_collection_modifyitems(config, items):
    python = config.getoption("--flavour") == "python"
    external = bool(config.getoption("--runner-url"))
    for item in items:
        marker = item.get_closest_marker("differs")
        if python and marker is not None:
            item.add_marker(pytest.mark.skip(
                reason="deliberate difference: " + (marker.args[0] if marker.args else "")))
        marker = item.get_closest_marker("local_only")
        if external and marker is not None:
            item.add_marker(pytest.mark.skip(
                reason="local mode only: " + (marker.args[0] if marker.args else "")))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psql(url, *args):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *args], check=True,
                   stdout=subprocess.DEVNULL)


def _database_url(admin: str, name: str) -> str:
    base, _, query = admin.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def _wait_healthy(url: str, process, log_path: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, errors="replace") as f:
                pytest.fail(f"janitor-runner exited with {process.returncode}:\n{f.read()[-4000:]}")
        try:
            resp = jr_http.request("GET", url + "/health", timeout=2)
            if resp.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail("janitor-runner did not answer /health in time")


@pytest.fixture(scope="session")
def target(request, tmp_path_factory):
    opt = request.config.getoption
    flavour = opt("--flavour")
    if opt("--runner-url"):
        if not opt("--dsn"):
            pytest.fail("--runner-url needs --dsn (the runner's database)")
        yield jr_http.Target(
            url=opt("--runner-url").rstrip("/"),
            public_url=(opt("--public-url") or "").rstrip("/") or None,
            dsn=opt("--dsn"), campaign=opt("--campaign"), local=False, flavour=flavour,
            logs_dir=opt("--logs-location"), vcs_base=None)
        return

    admin = os.environ.get("DATABASE_URL")
    if not admin:
        pytest.skip("DATABASE_URL is not set (or pass --runner-url and --dsn)")
    if not os.environ.get("JR_PARITY_SKIP_BUILD"):
        subprocess.run(["cargo", "build", "--quiet", "--bin", "janitor-runner"], check=True,
                       cwd=ROOT)
    binary = _binary()
    tmp = tmp_path_factory.mktemp("runner")
    empty = tmp / "empty.conf"
    empty.write_text("")
    name = "jrhttp_" + uuid.uuid4().hex
    _psql(admin, "-c", f"CREATE DATABASE {name}")
    url = _database_url(admin, name)
    process = None
    try:
        subprocess.run([binary, "migrate", "--config", str(empty), "--database-url", url],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        logs, artifacts = tmp / "logs", tmp / "artifacts"
        logs.mkdir()
        artifacts.mkdir()
        config = tmp / "janitor.conf"
        config.write_text(CONFIG.format(
            logs=logs, artifacts=artifacts, committer=LOCAL_COMMITTER,
            campaign=LOCAL_CAMPAIGN, empty_campaign=LOCAL_EMPTY_CAMPAIGN))
        port, public_port = _free_port(), _free_port()
        args = [binary, "--config", str(config), "--database-url", url,
                "--port", str(port), "--public-port", str(public_port),
                "--listen-address", "127.0.0.1", "--public-vcs-location", LOCAL_VCS_BASE]
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)
        if env.get("REDIS_URL"):
            args += ["--redis-prefix", f"parity-{uuid.uuid4().hex[:12]}:"]
        log_path = str(tmp / "runner.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, process, log_path)
        yield jr_http.Target(
            url=base, public_url=f"http://127.0.0.1:{public_port}", dsn=url,
            campaign=LOCAL_CAMPAIGN, local=True, flavour=flavour, logs_dir=str(logs),
            vcs_base=LOCAL_VCS_BASE, empty_campaign=LOCAL_EMPTY_CAMPAIGN,
            committer=LOCAL_COMMITTER)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _psql(admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def worker_login(target):
    """A worker of the public app: (login, password), stored as a pgcrypto crypt hash."""
    login, password = jr_http.unique("parity"), uuid.uuid4().hex
    target.execute(
        "INSERT INTO worker (name, password) VALUES (:'login', crypt(:'pw', gen_salt('bf')))",
        login=login, pw=password)
    return login, password


@pytest.fixture
def codebase(target):
    """A fresh codebase (git branch URL, subpath "") uploaded over HTTP."""
    return target.new_codebase()


@pytest.fixture
def queued(target, codebase):
    """A fresh codebase with one candidate of the target campaign, queued by the upload."""
    success = target.upload_candidate(codebase, command="FOO=bar echo 'hello world'",
                                      context="ctx-" + codebase)
    return codebase, success
