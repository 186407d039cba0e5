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
