"""Unit parity of the models: the JSON fixtures built from the specs (tests/fixtures/models),
read and written through the Python face exactly as the Rust tests do through the library."""

import json
from datetime import datetime
from pathlib import Path

import pytest

import janitor_runner as jr

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def timestamp(text):
    return datetime.fromisoformat(text.replace("Z", ""))


@pytest.mark.parametrize(
    "name", ["active_run_polling.json", "active_run_jenkins.json", "active_run_legacy.json"]
)
def test_active_run_round_trip(name):
    fx = fixture(name)
    run = jr.ActiveRun.from_json(fx["input"])
    written = run.json(timestamp(fx["now"]))
    assert written == fx["expected"]
    # The written form reads back, from a dict or from its text.
    again = jr.ActiveRun.from_json(json.dumps(written))
    assert again.json(timestamp(fx["now"])) == written
    assert run.log_id == fx["input"]["id"]
    assert run.queue_id == fx["input"]["queue_id"]


@pytest.mark.parametrize(
    "name",
    ["finish_rust_worker_success.json", "finish_failure_debian_without_changes.json"],
)
def test_janitor_result_from_worker_result(name):
    fx = fixture(name)
    run = jr.ActiveRun.from_json(fx["run"])
    worker = jr.WorkerResult.from_json(fx["worker_result"])
    result = jr.JanitorResult.from_worker_result(
        run, worker, fx["logfilenames"], timestamp(fx["now"])
    )
    assert result.json() == fx["expected"]
    assert result.code == fx["expected"]["code"]


def test_resume_info_round_trip():
    fx = fixture("resume_info.json")
    info = jr.ResumeInfo.from_json(fx["input"])
    assert info.json() == fx["expected"]


def test_bad_json_names_the_key():
    with pytest.raises(jr.ModelError, match="missing key"):
        jr.ActiveRun.from_json({"queue_id": 1})
    broken = fixture("active_run_polling.json")["input"]
    broken["queue_id"] = [1]
    with pytest.raises(jr.ModelError, match="queue_id"):
        jr.ActiveRun.from_json(broken)
    # ModelError is a ValueError, as the Python runner's parsing errors are.
    with pytest.raises(ValueError):
        jr.WorkerResult.from_json("[1, 2]")


def test_exception_names():
    for name in [
        "QueueItemAlreadyClaimed",
        "RunExists",
        "CandidateUnavailable",
        "QueueEmpty",
        "QueueRateLimiting",
    ]:
        exc = getattr(jr, name)
        assert issubclass(exc, Exception)
        assert exc.__name__ == name


def test_worker_result_from_keywords_equals_from_json():
    """The dataclass's constructor: keywords with bytes revisions give the result the same
    result.json gives, and every field reads back as the Python's does (bytes revisions)."""
    start = datetime(2026, 1, 1, 12, 0)
    keywords = dict(
        context="ctx", codemod={"fixed": 1},
        main_branch_revision=b"git-v1:aaa", revision="git-v1:bbb", value=20,
        branches=[("main", None, b"git-v1:aaa", b"git-v1:bbb")], tags=[("v1", b"git-v1:ccc")],
        remotes={"origin": {"url": "https://example.org/x"}}, details={"k": "v"}, stage="build",
        builder_result={"name": "generic", "details": {}}, start_time=start,
        finish_time=start.replace(minute=5), queue_id=7, worker_name="w1", refreshed=True,
        target_branch_url="https://example.org/t", branch_url="https://example.org/b",
        vcs_type="git", subpath="", transient=False, codebase="alpha")
    made = jr.WorkerResult("success", "Fixed", **keywords)
    sent = jr.WorkerResult.from_json({
        "code": "success", "description": "Fixed", "context": "ctx", "codemod": {"fixed": 1},
        "main_branch_revision": "git-v1:aaa", "revision": "git-v1:bbb", "value": 20,
        "branches": [["main", None, "git-v1:aaa", "git-v1:bbb"]], "tags": [["v1", "git-v1:ccc"]],
        "remotes": {"origin": {"url": "https://example.org/x"}}, "details": {"k": "v"},
        "stage": "build", "target": {"name": "generic", "details": {}},
        "start_time": "2026-01-01T12:00:00", "finish_time": "2026-01-01T12:05:00",
        "queue_id": 7, "worker_name": "w1", "refreshed": True,
        "target_branch_url": "https://example.org/t", "branch_url": "https://example.org/b",
        "vcs_type": "git", "subpath": "", "transient": False, "codebase": "alpha"})
    run = jr.ActiveRun.from_json(fixture("active_run_polling.json")["input"])
    now = datetime(2026, 1, 1, 13, 0)
    assert (jr.JanitorResult.from_worker_result(run, made, ["worker.log"], now).json()
            == jr.JanitorResult.from_worker_result(run, sent, ["worker.log"], now).json())
    assert made.code == "success"
    assert (made.description, made.context, made.codemod) == ("Fixed", "ctx", {"fixed": 1})
    assert (made.main_branch_revision, made.revision) == (b"git-v1:aaa", b"git-v1:bbb")
    assert made.branches == [("main", None, b"git-v1:aaa", b"git-v1:bbb")]
    assert made.tags == [("v1", b"git-v1:ccc")]
    assert made.remotes == {"origin": {"url": "https://example.org/x"}}
    assert (made.details, made.stage, made.value) == ({"k": "v"}, "build", 20)
    assert (made.start_time, made.finish_time) == (start, start.replace(minute=5))
    assert (made.queue_id, made.worker_name, made.refreshed) == (7, "w1", True)
    assert (made.target_branch_url, made.branch_url, made.vcs_type, made.subpath) == (
        "https://example.org/t", "https://example.org/b", "git", "")
    assert (made.transient, made.codebase) == (False, "alpha")
    # Only the required fields: the dataclass defaults; and the same checks as result.json.
    bare = jr.WorkerResult(None, None)
    assert (bare.code, bare.branches, bare.refreshed, bare.start_time) == (
        "success", None, False, None)
    with pytest.raises(jr.ModelError, match="branches"):
        jr.WorkerResult("x", None, branches=[("main", None, None, None), ("main", None, None, None)])


def test_janitor_result_keywords():
    start, finish = datetime(2026, 1, 1, 12, 0), datetime(2026, 1, 1, 12, 3)
    aborted = jr.JanitorResult(
        codebase="alpha", log_id="run-1", branch_url="https://example.org/a", code="timeout",
        description="gone", campaign="lintian-fixes", start_time=start, finish_time=finish,
        worker_name="w1", transient=True, change_set="cs")
    assert (aborted.log_id, aborted.codebase, aborted.campaign, aborted.code) == (
        "run-1", "alpha", "lintian-fixes", "timeout")
    assert (aborted.description, aborted.transient, aborted.change_set) == ("gone", True, "cs")
    assert aborted.duration.total_seconds() == 180
    assert aborted.logfilenames == [] and aborted.resume_from is None
    js = aborted.json()
    assert (js["remotes"], js["branch_url"], aborted.worker_name) == (
        {}, "https://example.org/a", "w1")
    # With a worker result, its fields win; a refreshed run does not resume.
    worker = jr.WorkerResult("success", "done", start_time=start, finish_time=finish,
                             codebase="beta", refreshed=True, branch_url="https://b")
    reported = jr.JanitorResult(
        codebase="alpha", log_id="run-2", branch_url="https://example.org/a", code="x",
        worker_result=worker, logfilenames=["worker.log"], campaign="c", resume_from="run-0")
    assert (reported.code, reported.description, reported.codebase) == ("success", "done", "beta")
    assert (reported.branch_url, reported.resume_from) == ("https://b", None)
    assert reported.logfilenames == ["worker.log"]
    with pytest.raises(ValueError, match="start_time"):
        jr.JanitorResult(codebase="a", log_id="r", branch_url=None, code="x", campaign="c")
