"""Backchannels, ActiveRun and the watchdog through the Python face, against fake workers
served by a stdlib HTTP server on loopback. Expected behaviour: models-backchannels-worker.md §1.3 and 3, 4.1
and 4.7; the upstream tests test_watch_dog and test_serialize_active_run."""

import asyncio
import io
import json
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import _database
import janitor_runner as jr
from _database import database  # noqa: F401  (the fixture)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


class FakeWorkers:
    """Workers under /<name>/...: ``answers[name]`` maps a path to (status, content type,
    body)."""

    def __init__(self):
        self.answers = {}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                fake.requests.append((self.command, self.path))
                name, _, rest = self.path.lstrip("/").partition("/")
                status, content_type, body = fake.answers.get(name, {}).get(
                    "/" + rest, (404, "text/plain", b"Not Found"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, name, answers):
        self.answers[name] = answers
        return f"{self.base}/{name}"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def workers():
    fake = FakeWorkers()
    yield fake
    fake.close()


def closed_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def json_answer(value, status=200):
    return (status, "application/json", json.dumps(value).encode())


def sample_run(backchannel, **overrides):
    kwargs = dict(
        worker_name="myworker", worker_link="http://example.com/", campaign="mycampaign",
        codebase="foo", change_set=None, command="ls", instigated_context="instigated-context",
        estimated_duration=timedelta(seconds=2), queue_id=4242, log_id="some-log-id",
        backchannel=backchannel, start_time=datetime.utcnow(),
        vcs_info={"vcs_type": "git", "branch_url": "http://example.com/foo"})
    kwargs.update(overrides)
    return jr.ActiveRun(**kwargs)


def test_serialize_active_run():
    # The upstream test, as it is.
    run_ = sample_run(jr.Backchannel())
    orig_json = run_.json()
    run_copy = jr.ActiveRun.from_json(orig_json)
    run_copy_json = run_copy.json()
    run_copy_json["current_duration"] = orig_json["current_duration"]
    assert run_copy_json == orig_json
    assert run_copy == run_
    assert run_ != sample_run(jr.Backchannel(), queue_id=1)
    assert run_ != "some-log-id"


def test_active_run_attributes():
    start = datetime(2026, 11, 1, 10, 0, 0, 123456)
    run_ = sample_run(jr.PollingBackchannel("http://w:8080/"), start_time=start,
                      instigated_context={"a": [1, 2]}, resume_from="earlier")
    assert (run_.worker_name, run_.worker_link, run_.campaign, run_.codebase) == (
        "myworker", "http://example.com/", "mycampaign", "foo")
    assert (run_.change_set, run_.command, run_.queue_id, run_.log_id) == (
        None, "ls", 4242, "some-log-id")
    assert run_.start_time == start
    assert run_.estimated_duration == timedelta(seconds=2)
    assert run_.instigated_context == {"a": [1, 2]}
    assert run_.resume_from == "earlier"
    assert run_.vcs_info == {"vcs_type": "git", "branch_url": "http://example.com/foo"}
    assert (run_.vcs_type, run_.main_branch_url, run_.subpath) == (
        "git", "http://example.com/foo", None)
    assert isinstance(run_.current_duration, timedelta)
    assert run_.current_duration > timedelta(days=1)
    assert isinstance(run_.backchannel, jr.PollingBackchannel)
    assert isinstance(run_.backchannel, jr.Backchannel)
    assert run_.backchannel.my_url == "http://w:8080/"
    js = run_.json()
    assert js["backchannel"] == {"my_url": "http://w:8080/"}
    assert js["start_time"] == "2026-11-01T10:00:00.123456"
    assert js["resume_from"] == "earlier"
    # Attributes can be set, as on the Python class.
    run_.resume_from = None
    run_.worker_name = "other"
    run_.vcs_info = {"branch_url": "https://example.org/x", "subpath": ""}
    run_.backchannel = jr.JenkinsBackchannel("https://ci/job/1/")
    run_.estimated_duration = None
    assert run_.json()["worker"] == "other"
    assert run_.json()["estimated_duration"] is None
    assert run_.main_branch_url == "https://example.org/x"
    assert run_.subpath == ""
    assert run_.json()["backchannel"] == {"my_url": "https://ci/job/1/", "jenkins": None}
    result = run_.create_result(code="worker-timeout", branch_url=run_.main_branch_url,
                                description="gone", transient=True)
    assert result.code == "worker-timeout"
    rjs = result.json()
    assert (rjs["log_id"], rjs["campaign"], rjs["codebase"], rjs["branch_url"]) == (
        "some-log-id", "mycampaign", "foo", "https://example.org/x")
    assert (rjs["description"], rjs["transient"], rjs["resume"], rjs["remotes"]) == (
        "gone", True, None, {})


def test_backchannel_json_forms():
    assert jr.Backchannel().json() == {}
    polling = jr.PollingBackchannel.from_json({"my_url": "http://w/"})
    assert isinstance(polling, jr.PollingBackchannel)
    assert polling.json() == {"my_url": "http://w/"}
    jenkins = jr.JenkinsBackchannel("https://ci/job/7/", {"build": 7})
    assert jenkins.json() == {"my_url": "https://ci/job/7/", "jenkins": {"build": 7}}
    assert jr.JenkinsBackchannel.from_json(jenkins.json()).json() == jenkins.json()
    with pytest.raises(KeyError):
        jr.JenkinsBackchannel.from_json({"my_url": "https://ci/job/7/"})
    # ActiveRun.from_json picks the kind from the keys, as the Python does.
    base = sample_run(None).json()
    for backchannel, kind in [({}, jr.Backchannel), ({"my_url": "http://w/"},
                              jr.PollingBackchannel),
                              ({"my_url": "https://ci/", "jenkins": None},
                               jr.JenkinsBackchannel)]:
        restored = jr.ActiveRun.from_json(dict(base, backchannel=backchannel)).backchannel
        assert type(restored) is kind
        assert restored.json() == backchannel
    assert "PollingBackchannel" in repr(polling)
    # The constructor also takes the assign request's form, or the stored one.
    from_request = sample_run({"kind": "http", "url": "http://w:8080/"}).backchannel
    assert from_request.json() == {"my_url": "http://w:8080/"}
    assert sample_run({"my_url": "http://w/"}).backchannel.my_url == "http://w/"
    with pytest.raises(jr.ModelError):
        sample_run({"kind": "http"})


def test_ping_failures_are_the_python_exceptions():
    assert issubclass(jr.PingTimeout, jr.PingFailure)
    assert issubclass(jr.PingFatalFailure, jr.PingFailure)
    assert issubclass(jr.PingFailure, jr.RunnerError)
    assert issubclass(jr.RunnerError, Exception)
    error = jr.PingFatalFailure("gone")
    assert (error.reason, str(error)) == ("gone", "gone")


def test_polling_backchannel(workers):
    url = workers.add("w1", {
        "/log-id": json_answer("run-1"),
        "/logs": json_answer(["worker.log"]),
        "/logs/worker.log": (200, "text/plain", b"line one\nline two\n"),
        "/kill": json_answer({}),
    })
    raw = workers.add("w2", {"/log-id": (200, "text/plain", b"run-2")})
    moved = workers.add("w3", {"/log-id": json_answer("run-9")})
    idle = workers.add("w4", {"/log-id": json_answer(None)})
    failing = workers.add("w5", {"/log-id": (500, "text/plain", b"oops")})

    async def main():
        channel = jr.PollingBackchannel(url)
        assert await channel.ping("run-1") is None
        assert await sample_run(channel, log_id="run-1").ping() is True
        assert await jr.PollingBackchannel(raw).ping("run-2") is None
        with pytest.raises(jr.PingFatalFailure) as fatal:
            await jr.PollingBackchannel(moved).ping("run-3")
        assert fatal.value.reason == "Worker started processing new run run-9 rather than run-3"
        # janitor-worker answers null until it starts on its run: a failure, not a verdict.
        with pytest.raises(jr.PingFailure) as idle_failure:
            await jr.PollingBackchannel(idle).ping("run-4")
        assert not isinstance(idle_failure.value, (jr.PingTimeout, jr.PingFatalFailure))
        with pytest.raises(jr.PingTimeout) as timeout:
            await jr.PollingBackchannel(failing).ping("run-5")
        assert timeout.value.reason.startswith(f"Failed to ping client {failing}")
        with pytest.raises(jr.PingTimeout):
            await jr.PollingBackchannel(closed_url()).ping("run-6")
        assert await channel.list_log_files() == ["worker.log"]
        log = await channel.get_log_file("worker.log")
        assert isinstance(log, io.BytesIO)
        assert log.read() == b"line one\nline two\n"
        with pytest.raises(FileNotFoundError):
            await channel.get_log_file("missing.log")
        assert await channel.kill() is None
        # janitor-worker has no /kill, and no /logs before its log directory exists.
        with pytest.raises(ConnectionError):
            await jr.PollingBackchannel(raw).kill()
        with pytest.raises(ConnectionError):
            await jr.PollingBackchannel(raw).list_log_files()

    run(main())
    assert ("GET", "/w1/log-id") in workers.requests
    assert ("POST", "/w1/kill") in workers.requests


def test_jenkins_and_no_backchannel(workers):
    building = workers.add("j1", {"/api/json": json_answer({"id": "3", "result": None}),
                                  "/logText/progressiveText": (200, "text/plain", b"console\n")})
    failed = workers.add("j2", {"/api/json": json_answer({"id": "4", "result": "FAILURE"})})
    broken = workers.add("j3", {"/api/json": (500, "text/plain", b"oops")})
    vanished = workers.add("j4", {})

    async def main():
        channel = jr.JenkinsBackchannel(building + "/")
        assert await channel.ping("run-1") is None
        assert await channel.list_log_files() == ["worker.log"]
        assert (await channel.get_log_file("worker.log")).read() == b"console\n"
        with pytest.raises(FileNotFoundError):
            await channel.get_log_file("build.log")
        with pytest.raises(NotImplementedError):
            await channel.kill()
        with pytest.raises(jr.PingFatalFailure) as fatal:
            await jr.JenkinsBackchannel(failed).ping("run-2")
        assert fatal.value.reason == "Jenkins lists job 4 for run run-2 as failed"
        with pytest.raises(jr.PingFailure) as failure:
            await jr.JenkinsBackchannel(broken).ping("run-3")
        assert not isinstance(failure.value, (jr.PingTimeout, jr.PingFatalFailure))
        with pytest.raises(jr.PingFatalFailure) as gone:
            await jr.JenkinsBackchannel(vanished).ping("run-4")
        assert gone.value.reason == f"Jenkins job {vanished} has disappeared"
        none = jr.Backchannel()
        for call in (none.ping("x"), none.kill(), none.list_log_files(),
                     none.get_log_file("worker.log")):
            with pytest.raises(NotImplementedError):
                await call

    run(main())


@pytest.fixture(params=["postgres", "redis"])
def store(request):
    if request.param == "redis" and not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set")
    return request.param


def processor(pool, store, **kwargs):
    if store == "redis":
        kwargs.update(redis=os.environ["REDIS_URL"], redis_prefix=f"jrpy-{uuid.uuid4().hex}:")
    return jr.QueueProcessor(pool, **kwargs)


def test_watch_dog(database, store):
    # The upstream test, plus: a second start is refused, stop() waits.
    async def main():
        pool = await jr.connect(database)
        qp = processor(pool, store)
        qp.start_watchdog()
        assert qp._watch_dog is not None
        with pytest.raises(RuntimeError):
            qp.start_watchdog()
        qp.stop_watchdog()
        assert qp._watch_dog is None
        qp.start_watchdog()
        task = qp._watch_dog
        assert not task.done()
        await qp.stop()
        assert qp._watch_dog is None and task.done()
        await pool.close()

    run(main())


def test_watchdog_pass_reaps_dead_runs(database, store, workers):
    """With run_timeout=0 every run is due at once (models-backchannels-worker.md §4.7): a run whose worker
    answers with its id stays and gets a keep-alive; one without backchannel is aborted
    worker-timeout, stored once, and its candidate queued again."""
    _database.psql(database, "-c",
                   "INSERT INTO codebase (name, value) VALUES ('live', 10), ('dead', 10);"
                   "INSERT INTO candidate (codebase, suite, command, value) VALUES"
                   " ('live', 'generic', 'true', 5), ('dead', 'generic', 'true', 5)")

    async def main():
        pool = await jr.connect(database)
        queue = jr.Queue(pool)
        qp = processor(pool, store, run_timeout=0)
        started = datetime.utcnow() - timedelta(hours=2)
        for name in ("live", "dead"):
            queue_id, _ = await queue.add(codebase=name, command="true", campaign="generic")
            backchannel = None
            if name == "live":
                backchannel = jr.PollingBackchannel(
                    workers.add("live", {"/log-id": json_answer("run-live")}))
            await qp.register_run(jr.ActiveRun(
                campaign="generic", codebase=name, change_set=None, command="true",
                instigated_context=None, estimated_duration=None, queue_id=queue_id,
                log_id=f"run-{name}", start_time=started, vcs_info={},
                backchannel=backchannel, worker_name=None))
        before = {e["id"]: e["last-keepalive"] for e in (await qp.status_json())["processing"]}
        await asyncio.sleep(1.1)
        report = await qp.check_active_runs()
        assert report["aborted"] == [{"id": "run-dead", "code": "worker-timeout"}], report
        assert (report["due"], report["alive"], report["errors"]) == (2, 1, 0), report
        [live] = (await qp.status_json())["processing"]
        assert live["id"] == "run-live"
        assert live["last-keepalive"] > before["run-live"]
        [[code, description, transient]] = _database.query(
            database, "SELECT result_code, description, failure_transient FROM run"
                      " WHERE id = 'run-dead'")
        assert (code, transient) == ("worker-timeout", "t")
        assert description.startswith("No keepalives received in 0:00:01.")
        for _ in range(100):
            requeued = _database.query(
                database, "SELECT requester FROM queue WHERE codebase = 'dead'")
            if requeued == [["after run schedule"]]:
                break
            await asyncio.sleep(0.05)
        assert requeued == [["after run schedule"]]
        await pool.close()

    run(main())
