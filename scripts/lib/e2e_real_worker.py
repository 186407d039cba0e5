#!/usr/bin/env python3
"""The upstream janitor-worker against janitor-runner, end to end (scripts/e2e-real-worker).

Starts a local git forge and a local VCS store (each a directory of git repositories served
over smart HTTP by `git http-backend`; the worker cannot open the store's branches through
file:// URLs), and a runner process; queues items, runs the worker on each, and checks what
the database, the log store and the VCS store say. Prints a summary; exits 1 when an
expectation fails. Standard library only; PostgreSQL through psql.
"""

import argparse
import gzip
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

CAMPAIGN = "fixes"
# The codemod: append a line unless it is there (so a resumed run has nothing new to do),
# and say what it did on stdout (silver-platter's commit message).
FIX = "sh -c 'grep -q fixed README || { echo fixed >> README; echo Fix the README; }'"
# A codemod that changes nothing.
NOTHING = "true"


@dataclass
class Scenario:
    codebase: str
    # The `check` target of the upstream Makefile, which the generic build runs.
    check: str = "true"
    command: str = FIX
    # Result code expected for each run, in order.
    expect: list = field(default_factory=lambda: ["success"])
    # The upstream repository does not exist.
    missing: bool = False
    # Runs 2+ must resume from run 1's (or the previous) result.
    resumed: bool = False
    # What a worker that cannot open the store's resume branch (`<campaign>/main`: silver-
    # platter up to 0.8.6 passes the escaped `%2F` on as part of the name) reports instead, and
    # whether each of runs 2+ is offered the resume: run 3 is not offered it again.
    expect_unopenable: list = field(default_factory=list)
    offered_unopenable: list = field(default_factory=list)
    # The worker is killed this many seconds into the run; the watchdog must reap it.
    kill_after: float = 0


SCENARIOS = [
    Scenario("succeeds"),
    Scenario("fails-check", check="false", expect=["unidentified-error"]),
    Scenario("nothing", command=NOTHING, expect=["nothing-to-do"]),
    Scenario("missing", missing=True, expect=["branch-missing"]),
    Scenario("thrice", expect=["success", "nothing-new-to-do", "nothing-new-to-do"],
             resumed=True,
             expect_unopenable=["success", "worker-resume-branch-missing", "success"],
             offered_unopenable=[True, False]),
    Scenario("slow", command="sh -c 'sleep 75; " + FIX[len("sh -c '"):],
             expect=["success"]),
    Scenario("killed", command="sleep 600", expect=["worker-timeout"], kill_after=15),
]


def say(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(*args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


class Database:
    def __init__(self, url):
        self.url = url

    def execute(self, sql):
        run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.url, "-c", sql)

    def rows(self, sql):
        out = run("psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-P", "null=<NULL>",
                  "-v", "ON_ERROR_STOP=1", self.url, "-c", sql).stdout
        return [[None if f == "<NULL>" else f for f in line.split("\x1f")]
                for line in out.splitlines() if line]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_upstream(root, scenario):
    """A bare repository <root>/<codebase>.git with a README and a Makefile on `main`."""
    work = tempfile.mkdtemp(prefix="upstream-")
    run("git", "init", "-q", "-b", "main", work)
    with open(os.path.join(work, "README"), "w") as f:
        f.write(f"{scenario.codebase}\n")
    with open(os.path.join(work, "Makefile"), "w") as f:
        f.write(f"all:\n\ttrue\ncheck:\n\t{scenario.check}\n")
    git = ["git", "-C", work, "-c", "user.name=Upstream", "-c", "user.email=up@example.org"]
    run(*git, "add", "README", "Makefile")
    run(*git, "commit", "-q", "-m", "Initial import")
    run("git", "clone", "-q", "--bare", work, os.path.join(root, f"{scenario.codebase}.git"))


def wait_for_line(proc, prefix, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before printing {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"no {prefix!r} within {timeout} s")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


class Harness:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work)
        self.procs = []
        self.failures = []
        self.lines = []
        self.scenarios = [s for s in SCENARIOS if not args.only or s.codebase in args.only]
        if args.worker_escaped_branch_names:
            for scenario in self.scenarios:
                if scenario.expect_unopenable:
                    scenario.expect = scenario.expect_unopenable

    def spawn(self, *argv, log, env=None, stdout=subprocess.PIPE):
        handle = open(os.path.join(self.work, log), "w")
        proc = subprocess.Popen(argv, stdout=stdout, stderr=handle, text=True, env=env,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def check(self, ok, what):
        self.lines.append(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)

    def setup(self):
        for sub in ("forge", "vcs/git", "logs", "artifacts", "out"):
            os.makedirs(os.path.join(self.work, sub), exist_ok=True)
        forge_root = os.path.join(self.work, "forge")
        store_root = os.path.join(self.work, "vcs", "git")
        for scenario in self.scenarios:
            if not scenario.missing:
                make_upstream(forge_root, scenario)
            # The janitor's store keeps one repository per codebase; workers push into it.
            run("git", "init", "-q", "--bare", os.path.join(store_root, scenario.codebase))
        here = os.path.dirname(os.path.abspath(__file__))
        server = os.path.join(here, "git_http_server.py")
        forge = self.spawn(sys.executable, server, forge_root, log="forge.log")
        self.forge = wait_for_line(forge, "listening on ")
        store = self.spawn(sys.executable, server, store_root, log="store.log")
        self.store = wait_for_line(store, "listening on ")
        say(f"git forge on {self.forge}, VCS store on {self.store}")

        self.db = Database(self.args.database_url)
        config = os.path.join(self.work, "janitor.conf")
        with open(config, "w") as f:
            f.write(f'committer: "Janitor <janitor@example.org>"\n'
                    f'logs_location: "{self.work}/logs"\n'
                    f'artifact_location: "{self.work}/artifacts"\n'
                    f'campaign {{ name: "{CAMPAIGN}" branch_name: "{CAMPAIGN}" '
                    f'generic_build {{}} }}\n')
        run(self.args.runner, "migrate", "--config", config,
            "--database-url", self.args.database_url)
        values = []
        for scenario in self.scenarios:
            url = f"{self.forge}{scenario.codebase}.git"
            values.append(f"('{scenario.codebase}', '{url}', '{url}', 'git', 10)")
        self.db.execute("INSERT INTO codebase (name, url, branch_url, vcs_type, value) VALUES "
                        + ", ".join(values))
        self.port = free_port()
        # The PostgreSQL store: a REDIS_URL in the environment would share claims with
        # whatever else uses that Redis.
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env["RUST_LOG"] = "info,janitor_runner=debug"
        runner = self.spawn(
            self.args.runner, "--config", config, "--database-url", self.args.database_url,
            "--listen-address", "127.0.0.1", "--port", str(self.port), "--public-port", "0",
            "--public-vcs-location", f"git={self.store}",
            # A run is pinged on every pass and reaped after a minute without an answer.
            "--run-timeout", "1", "--watchdog-interval", "2",
            log="runner.log", env=env)
        wait_for_line(runner, "janitor-runner listening on ")
        self.runner_url = f"http://127.0.0.1:{self.port}"
        say(f"runner on {self.runner_url}")

    def queue(self, scenario):
        command = scenario.command.replace("'", "''")
        self.db.execute(
            "INSERT INTO queue (codebase, suite, command, bucket) VALUES "
            f"('{scenario.codebase}', '{CAMPAIGN}', '{command}', 'manual')")

    def run_worker(self, scenario, attempt):
        port = free_port()
        out = tempfile.mkdtemp(prefix=f"{scenario.codebase}-{attempt}-",
                               dir=os.path.join(self.work, "out"))
        log = f"worker-{scenario.codebase}-{attempt}.log"
        argv = shlex.split(self.args.worker) + [
            "--base-url", f"{self.runner_url}/", "--port", str(port),
            "--listen-address", "127.0.0.1", "--my-url", f"http://127.0.0.1:{port}/",
            "--output-directory", out, "--codebase", scenario.codebase,
            "--campaign", CAMPAIGN, "--debug"]
        worker = self.spawn(*argv, log=log, stdout=subprocess.DEVNULL)
        if scenario.kill_after:
            time.sleep(scenario.kill_after)
            run_id = self.active_run_of(scenario.codebase)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            return run_id, log
        try:
            worker.wait(timeout=self.args.worker_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            self.check(False, f"{scenario.codebase} run {attempt}: worker still busy after "
                              f"{self.args.worker_timeout} s")
        return None, log

    def active_run_of(self, codebase):
        for entry in get_json(f"{self.runner_url}/status")["processing"]:
            if entry["codebase"] == codebase:
                return entry["id"]
        return None

    def runs_of(self, codebase):
        return self.db.rows(
            "SELECT id, result_code, resume_from, array_to_string(logfilenames, ' '), "
            "description FROM run WHERE codebase = '" + codebase + "' ORDER BY finish_time")

    def status_of(self, run_id):
        for entry in get_json(f"{self.runner_url}/status")["processing"]:
            if entry["id"] == run_id:
                return entry
        return None

    def keepalives_of(self, run_id):
        entry = self.status_of(run_id)
        return entry and entry["last-keepalive"]

    def exercise(self, scenario):
        for attempt, expected in enumerate(scenario.expect, start=1):
            self.queue(scenario)
            dropped = self.args.drop_cached_before_resume and scenario.resumed and attempt > 1
            if dropped:
                store = os.path.join(self.work, "vcs", "git", scenario.codebase)
                run("git", "-C", store, "update-ref", "-d", "refs/heads/main")
            say(f"{scenario.codebase}: run {attempt}, expecting {expected}")
            killed, log = self.run_worker(scenario, attempt)
            if killed:
                self.await_reaping(scenario, killed)
            runs = self.runs_of(scenario.codebase)
            name = f"{scenario.codebase} run {attempt}"
            if len(runs) < attempt:
                self.check(False, f"{name}: no run stored (worker log {log})")
                continue
            run_id, code, resume_from, logs, description = runs[attempt - 1]
            self.check(code == expected, f"{name}: {code} (expected {expected})"
                       + (f": {description}" if code != expected else ""))
            if expected not in ("worker-timeout", "branch-missing"):
                stored = sorted(os.listdir(os.path.join(self.work, "logs", scenario.codebase,
                                                        run_id)))
                self.check("worker.log.gz" in stored,
                           f"{name}: logs stored ({', '.join(stored) or 'none'})")
            if scenario.resumed and attempt > 1:
                previous = runs[attempt - 2][0]
                earlier_success = [r[0] for r in runs[:attempt - 1] if r[1] == "success"]
                offered = True
                if self.args.worker_escaped_branch_names and scenario.offered_unopenable:
                    offered = scenario.offered_unopenable[attempt - 2]
                if offered:
                    self.check(resume_from in earlier_success,
                               f"{name}: resumed from {resume_from} (earlier success: "
                               f"{earlier_success[-1] if earlier_success else None}, "
                               f"previous {previous})")
                else:
                    self.check(resume_from is None,
                               f"{name}: the resume the worker could not open is not offered "
                               f"again (resume_from {resume_from})")
            if attempt > 1 and not dropped:
                # The worker says in its own log (uploaded with the run) whether it could use
                # the store's copy of the upstream branch, which its first run pushed.
                text = self.stored_log(scenario.codebase, run_id, "worker.log")
                missing = [line for line in text.splitlines()
                           if "Cached branch URL" in line and "missing" in line]
                self.check(not missing and "Using cached branch" in text,
                           f"{name}: cached branch opened"
                           + (f" ({missing[0][-100:]})" if missing else ""))

    def stored_log(self, codebase, run_id, name):
        path = os.path.join(self.work, "logs", codebase, run_id, name + ".gz")
        try:
            with gzip.open(path, "rt", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def await_reaping(self, scenario, run_id):
        """The worker was killed: its run must be reaped worker-timeout about a minute after
        its last keep-alive."""
        entry = self.status_of(run_id) or {}
        age = entry.get("keepalive_age")
        self.check(age is not None and age < 10,
                   f"{scenario.codebase}: kept alive until the kill (last keep-alive {age} s "
                   f"before it, run started {entry.get('start_time')})")
        killed_at = time.monotonic()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and self.active_run_of(scenario.codebase):
            time.sleep(2)
        self.check(self.active_run_of(scenario.codebase) is None,
                   f"{scenario.codebase}: killed worker's run reaped by the watchdog "
                   f"{time.monotonic() - killed_at:.0f} s after the kill")

    def main(self):
        try:
            self.setup()
            for scenario in self.scenarios:
                if scenario.codebase == "slow":
                    self.exercise_slow(scenario)
                else:
                    self.exercise(scenario)
            self.check_branches()
        finally:
            self.stop_all()
        print("janitor-worker end to end:")
        print("\n".join(self.lines))
        print(f"{len(self.lines) - len(self.failures)} of {len(self.lines)} checks passed"
              f" (work directory {self.work})")
        return 1 if self.failures else 0

    def exercise_slow(self, scenario):
        """A run longer than --run-timeout: the watchdog's pings keep it alive."""
        self.queue(scenario)
        say(f"{scenario.codebase}: a run of 75 s with --run-timeout 1")
        port = free_port()
        out = tempfile.mkdtemp(prefix="slow-", dir=os.path.join(self.work, "out"))
        argv = shlex.split(self.args.worker) + [
            "--base-url", f"{self.runner_url}/", "--port", str(port),
            "--listen-address", "127.0.0.1", "--my-url", f"http://127.0.0.1:{port}/",
            "--output-directory", out, "--codebase", scenario.codebase,
            "--campaign", CAMPAIGN, "--debug"]
        worker = self.spawn(*argv, log="worker-slow-1.log", stdout=subprocess.DEVNULL)
        seen = set()
        run_id = None
        asked = False
        while worker.poll() is None:
            run_id = self.active_run_of(scenario.codebase) or run_id
            if run_id:
                seen.add(self.keepalives_of(run_id))
                if not asked:
                    asked = True
                    self.ask_worker(run_id)
            time.sleep(5)
        seen.discard(None)
        self.check(len(seen) >= 10, f"slow: {len(seen)} distinct keep-alives while working")
        runs = self.runs_of(scenario.codebase)
        self.check(bool(runs) and runs[-1][1] == "success",
                   f"slow: {runs[-1][1] if runs else 'no run'} after more than --run-timeout")

    def ask_worker(self, run_id):
        """The runner's /log and /kill routes against janitor-worker, which serves no /kill
        and answers 404 to /logs (it never records its output directory)."""
        for method, path, expected in [("GET", f"/log/{run_id}", 502),
                                       ("GET", f"/log/{run_id}/worker.log", 404),
                                       ("POST", f"/kill/{run_id}", 502)]:
            request = urllib.request.Request(self.runner_url + path, method=method)
            try:
                with urllib.request.urlopen(request, timeout=70) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            reason = json.loads(body or b"{}").get("reason", "") if status >= 400 else ""
            self.check(status == expected,
                       f"slow: {method} {path.replace(run_id, '<id>')} answers {status} "
                       f"(expected {expected}) {reason[:80]}")

    def check_branches(self):
        rows = self.db.rows(
            "SELECT r.codebase, b.role, b.revision FROM new_result_branch b "
            "JOIN run r ON r.id = b.run_id WHERE r.result_code = 'success' ORDER BY 1")
        codebases = sorted({row[0] for row in rows})
        self.check(bool(rows) and all(row[2] and row[2].startswith("git-v1:") for row in rows),
                   f"result branches recorded for {', '.join(codebases) or 'nothing'}")
        for codebase in codebases:
            store = os.path.join(self.work, "vcs", "git", codebase)
            refs = run("git", "-C", store, "for-each-ref", "--format=%(refname)").stdout.split()
            self.check(f"refs/heads/{CAMPAIGN}/main" in refs,
                       f"{codebase}: {CAMPAIGN}/main pushed to the VCS store")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", required=True, help="the janitor-runner binary")
    parser.add_argument("--worker", required=True,
                        help="command that runs janitor-worker (may include arguments)")
    parser.add_argument("--database-url", required=True, help="an empty database")
    parser.add_argument("--work", required=True, help="directory for everything else")
    parser.add_argument("--worker-timeout", type=int, default=300)
    parser.add_argument("--drop-cached-before-resume", action="store_true",
                        help="delete the store's `main` before each resumed run, so the worker "
                             "has no cached branch beside the resume branch (silver-platter "
                             "0.8.4 to 0.8.6 then asserts that the resume tip is the main "
                             "branch's, and the worker hangs)")
    parser.add_argument("--worker-escaped-branch-names", action="store_true",
                        help="the worker passes segment parameters on escaped, so it cannot "
                             "open a branch whose name has a '/' (janitor-worker as built "
                             "with silver-platter 0.8.4 to 0.8.6)")
    parser.add_argument("--only", action="append",
                        help="run only this scenario (repeatable): "
                             + ", ".join(s.codebase for s in SCENARIOS))
    return Harness(parser.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
