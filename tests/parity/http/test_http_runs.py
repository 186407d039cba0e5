"""Assignment, active runs, finishing a run with logs, and the stored run (http-api.md 4.1-4.5,
5.14-5.20, 6, 7, 9; models-backchannels-worker.md 1.3-1.6, 5, 7)."""

import datetime
import gzip
import os

import pytest

from jr_http import (ACTIVE_RUN_KEYS, ASSIGNMENT_KEYS, BRANCH_KEYS, ISO_SECONDS, KEEPALIVE_KEYS,
                     NAIVE_ISO, RESULT_KEYS, UUID4, basic_auth, multipart, naive_utc_now,
                     parse_interval_seconds, request, unique)

BACKCHANNEL_URL = "http://127.0.0.1:9/worker/"
WORKER_LINK = "https://ci.example.org/job/1"


@pytest.fixture
def cleanup(target):
    """Run ids to finish at the end if a failing test left them active."""
    ids = []
    yield ids
    for run_id in ids:
        if target.get(f"/active-runs/{run_id}").status == 200:
            # With times: the Python runner refuses a result without them.
            start, finish = times()
            target.finish(run_id, {"code": "parity-cleanup", "start_time": start.isoformat(),
                                   "finish_time": finish.isoformat()})


def times(minutes_ago=5, minutes=4):
    """A naive start/finish pair, `minutes` apart, with a fraction (no trailing zero)."""
    finish = (naive_utc_now() - datetime.timedelta(minutes=minutes_ago - minutes)).replace(
        microsecond=123457)
    start = finish - datetime.timedelta(minutes=minutes)
    return start, finish


def parse_db_time(value):
    return datetime.datetime.fromisoformat(value)


def assign_own(target, codebase, cleanup, **body):
    body.setdefault("worker_link", WORKER_LINK)
    body.setdefault("backchannel", {"kind": "http", "url": BACKCHANNEL_URL})
    resp = target.assign(codebase, **body)
    assert resp.status == 201, resp
    assignment = resp.json()
    cleanup.append(assignment["id"])
    return resp, assignment


def full_result(target, codebase, queue_id, start, finish):
    return {
        "code": "success", "description": "Fixed 3 issues", "context": "result-ctx",
        "codemod": {"fixed": ["a", "b", "c"]}, "main_branch_revision": "git-v1:aaa",
        "revision": "git-v1:bbb", "value": 12,
        "branches": [["main", None, "git-v1:aaa", "git-v1:bbb"]],
        "tags": [["v1.0", "git-v1:bbb"]], "remotes": {"origin": {"url": "https://e.org/x"}},
        "details": {"files": 3}, "stage": "codemod",
        "target": {"name": "generic", "details": {}},
        "start_time": start.isoformat(), "finish_time": finish.isoformat(),
        "queue_id": queue_id, "refreshed": False,
        "target_branch_url": "https://e.org/target", "branch_url": f"http://127.0.0.1:9/git/{codebase}",
        "subpath": "", "vcs_type": "git", "transient": False, "codebase": codebase,
        "campaign": target.campaign, "command": "ignored",
    }


def test_assign_finish_and_stored_run(target, queued, cleanup):
    codebase, success = queued
    [queue_row] = target.queue_rows(codebase)
    resp, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]

    # -- the assignment (4.3) --
    assert resp.headers.get("Location") == f"/active-runs/{run_id}"
    assert set(a) == ASSIGNMENT_KEYS, set(a) ^ ASSIGNMENT_KEYS
    assert UUID4.match(run_id), run_id
    assert a["description"] == f"{target.campaign} on {codebase}"
    assert a["queue_id"] == success["queue-id"] == queue_row["id"]
    assert a["codebase"] == codebase and a["campaign"] == target.campaign
    assert a["command"] == "echo 'hello world'"
    assert a["codemod"] == {"command": "echo 'hello world'", "environment": {}}
    assert a["env"]["FOO"] == "bar"
    assert a["resume"] is None
    assert set(a["branch"]) == BRANCH_KEYS
    assert a["branch"]["default-empty"] is False
    assert a["branch"]["url"] == f"http://127.0.0.1:9/git/{codebase}"
    assert a["branch"]["subpath"] == ""
    assert a["branch"]["vcs_type"] == "git"
    # The branch could not be opened: no colocated branches (4.3).
    assert a["branch"]["additional_colocated_branches"] is None
    assert a["build"]["target"] in ("generic", "debian")
    assert set(a["target_repository"]) == {"url", "vcs_type"}
    assert a["target_repository"]["vcs_type"] == "git"
    if target.local:
        assert a["build"] == {"target": "generic", "environment": {},
                              "config": {"chroot": "parity-chroot", "dep_server_url": None}}
        assert a["force-build"] is False and a["skip-setup-validation"] is False
        name, email = "Parity Bot", "parity@example.org"
        assert a["env"] == {
            "DEBFULLNAME": name, "GIT_COMMITTER_NAME": name, "GIT_AUTHOR_NAME": name,
            "DEBEMAIL": email, "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_EMAIL": email,
            "EMAIL": email, "COMMITTER": target.committer, "BRZ_EMAIL": target.committer,
            "FOO": "bar"}
        # 6 K: generic campaigns use the branch "main" of the store; store URLs are
        # <base>/git/<codebase> (docs/differences.md "Store URLs"), and name the branch for
        # breezy (`branch`) and for janitor-worker's silver-platter (`name`).
        cached = f"{target.vcs_base}/git/{codebase},branch=main"
        assert a["branch"]["cached_url"] == (cached + ",name=main" if target.rust else cached)
        assert a["target_repository"]["url"] == f"{target.vcs_base}/git/{codebase}"

    # -- the active run (4.1, 5.17) --
    resp = target.get(f"/active-runs/{run_id}")
    assert resp.status == 200, resp
    active = resp.json()
    assert set(active) == ACTIVE_RUN_KEYS, set(active) ^ ACTIVE_RUN_KEYS
    assert active["id"] == run_id
    assert active["queue_id"] == queue_row["id"]
    assert active["codebase"] == codebase and active["campaign"] == target.campaign
    assert active["change_set"] is None
    assert active["command"] == "FOO=bar echo 'hello world'"
    assert active["estimated_duration"] == float(queue_row["estimated_duration"])
    assert isinstance(active["current_duration"], float) and active["current_duration"] >= 0
    assert NAIVE_ISO.match(active["start_time"]), active["start_time"]
    started = datetime.datetime.fromisoformat(active["start_time"])
    assert abs((naive_utc_now() - started).total_seconds()) < 120
    assert active["worker"] is None
    assert active["worker_link"] == WORKER_LINK
    assert active["vcs"] == {"branch_url": f"http://127.0.0.1:9/git/{codebase}", "subpath": "",
                             "vcs_type": "git"}
    assert active["backchannel"] == {"my_url": BACKCHANNEL_URL}
    assert active["instigated_context"] == "ctx-" + codebase
    assert active["resume_from"] is None

    # -- listed in /active-runs and /status with keep-alive keys (4.2, 5.16) --
    listed = [r for r in target.get("/active-runs").json() if r["id"] == run_id]
    assert len(listed) == 1
    entry = listed[0]
    assert set(entry) == ACTIVE_RUN_KEYS | KEEPALIVE_KEYS
    assert ISO_SECONDS.match(entry["last-keepalive"]), entry["last-keepalive"]
    assert isinstance(entry["keepalive_age"], float) and 0 <= entry["keepalive_age"] < 120
    assert entry["mia"] is False
    for key in ACTIVE_RUN_KEYS - {"current_duration"}:
        assert entry[key] == active[key], key
    status = [r for r in target.get("/status").json()["processing"] if r["id"] == run_id]
    assert len(status) == 1 and status[0]["queue_id"] == queue_row["id"]
    assert set(status[0]) == ACTIVE_RUN_KEYS | KEEPALIVE_KEYS

    # The queue row stays while the run is active (5.5), and is not handed out twice.
    assert [r["id"] for r in target.queue_rows(codebase)] == [queue_row["id"]]
    if target.rust:  # the Python crashes on GET /queue (QUEUE_CRASH)
        assert any(q["queue_id"] == queue_row["id"] for q in target.get("/queue").json())
    again = target.assign(codebase)
    target.expect_error(again, 503, "queue empty")
    assert "Retry-After" not in again.headers

    # -- finish with logs (5.20, 7) --
    start, finish = times()
    result = full_result(target, codebase, queue_row["id"], start, finish)
    worker_log = b"worker log line 1\nline 2\n"
    build_log = b"build output\n" * 100
    resp = target.finish(run_id, result, [("worker.log", worker_log),
                                          ("build.log.1", build_log),
                                          ("notes.txt", b"not a log")])
    assert resp.status == 201, resp
    assert resp.headers.get("Location") == f"/runs/{run_id}"
    body = resp.json()
    assert set(body) == {"id", "filenames", "logs", "artifacts", "result"}
    assert body["id"] == run_id
    assert body["filenames"] == ["worker.log", "build.log.1", "notes.txt"]
    if target.rust:
        assert body["logs"] == ["build.log.1", "worker.log"]   # sorted (differences.md)
    else:
        assert sorted(body["logs"]) == ["build.log.1", "worker.log"]
    assert body["artifacts"] == []
    r = body["result"]
    assert set(r) == RESULT_KEYS, set(r) ^ RESULT_KEYS
    assert sorted(r.pop("logfilenames")) == ["build.log.1", "worker.log"]
    assert r == {
        "codebase": codebase, "campaign": target.campaign, "change_set": run_id,
        "log_id": run_id, "description": "Fixed 3 issues", "code": "success",
        "failure_details": {"files": 3}, "failure_stage": "codemod", "duration": 240.0,
        "finish_time": finish.isoformat(), "start_time": start.isoformat(),
        "transient": False, "target": {"name": "generic", "details": {}},
        "codemod": {"fixed": ["a", "b", "c"]}, "value": 12,
        "remotes": {"origin": {"url": "https://e.org/x"}},
        "branch_url": f"http://127.0.0.1:9/git/{codebase}", "resume": None,
        "branches": [["main", None, "git-v1:aaa", "git-v1:bbb"]],
        "tags": [["v1.0", "git-v1:bbb"]], "revision": "git-v1:bbb",
        "main_branch_revision": "git-v1:aaa"}

    # -- the database (7.3) --
    row = target.run_row(run_id)
    assert row is not None
    assert parse_db_time(row.pop("start_time")) == start
    assert parse_db_time(row.pop("finish_time")) == finish
    assert sorted(row.pop("logfilenames")) == ["build.log.1", "worker.log"]
    # DECISIONS.md worker contract 10: worker_link is persisted (Python drops it).
    assert row.pop("worker_link") == (WORKER_LINK if target.rust else None)
    assert row == {
        "id": run_id, "command": "FOO=bar echo 'hello world'", "description": "Fixed 3 issues",
        "result_code": "success", "instigated_context": "ctx-" + codebase,
        "context": "result-ctx", "main_branch_revision": "git-v1:aaa", "revision": "git-v1:bbb",
        "result": {"fixed": ["a", "b", "c"]}, "suite": target.campaign, "vcs_type": "git",
        "branch_url": f"http://127.0.0.1:9/git/{codebase}", "publish_status": "unknown",
        "value": 12, "worker": None, "result_tags": [["v1.0", "git-v1:bbb"]], "subpath": "",
        "failure_stage": "codemod", "failure_details": {"files": 3},
        "target_branch_url": "https://e.org/target", "failure_transient": False,
        "resume_from": None, "change_set": run_id, "codebase": codebase}
    # (Its state is the database triggers' business.)
    assert target.rows("SELECT id, campaign FROM change_set WHERE id = :'id'", id=run_id) == [
        {"id": run_id, "campaign": target.campaign}]
    assert target.rows("SELECT role, remote_name, base_revision, revision FROM new_result_branch"
                       " WHERE run_id = :'id'", id=run_id) == [
        {"role": "main", "remote_name": None, "base_revision": "git-v1:aaa",
         "revision": "git-v1:bbb"}]

    # -- the run is no longer active --
    target.expect_error(target.get(f"/active-runs/{run_id}"), 404, f"no such run {run_id}",
                        plain_in_python=True)
    assert not [x for x in target.get("/active-runs").json() if x["id"] == run_id]
    assert not [x for x in target.get("/status").json()["processing"] if x["id"] == run_id]
    target.expect_finish_of_stored_run(target.finish(run_id, result), run_id)

    # -- the logs, gzip-compressed with the finish time as MTIME (3.3) --
    if target.logs_dir:
        for name, content in (("worker.log", worker_log), ("build.log.1", build_log)):
            path = os.path.join(target.logs_dir, codebase, run_id, name + ".gz")
            with open(path, "rb") as f:
                raw = f.read()
            assert gzip.decompress(raw) == content
            mtime = int.from_bytes(raw[4:8], "little")
            assert mtime == int(finish.replace(tzinfo=datetime.timezone.utc).timestamp())
        assert not os.path.exists(os.path.join(target.logs_dir, codebase, run_id, "notes.txt.gz"))

    # -- the queue row was deleted, and the candidate re-queued in the background (7.3 4) --
    def requeued():
        rows = target.queue_rows(codebase)
        return rows if rows and rows[0]["id"] != queue_row["id"] else None
    [row] = target.wait_for(requeued, what="the post-run reschedule")
    assert row["bucket"] == "default"
    assert row["requester"] == "after run schedule"
    assert row["context"] == "result-ctx"
    assert row["command"] == "FOO=bar echo 'hello world'"
    # One counted success of 240 s whose context equals the given one (queue-and-scheduling.md §2.4).
    assert parse_interval_seconds(row["estimated_duration"]) == datetime.timedelta(seconds=240)


def test_get_and_update_run(target, queued, cleanup):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    start, finish = times()
    resp = target.finish(run_id, {"code": "nothing-to-do", "description": "no change",
                                  "start_time": start.isoformat(),
                                  "finish_time": finish.isoformat()},
                         [("worker.log", b"log")])
    assert resp.status == 201, resp
    resp = target.get(f"/runs/{run_id}")
    assert resp.status == 200, resp
    assert resp.json() == {"codebase": codebase, "campaign": target.campaign,
                           "publish_status": "unknown"}
    resp = target.post(f"/runs/{run_id}", {"publish_status": "rejected"})
    assert resp.status == 200, resp
    assert resp.json() == {"run_id": run_id, "publish_status": "rejected", "codebase": codebase,
                           "campaign": target.campaign}
    assert target.run_row(run_id)["publish_status"] == "rejected"
    assert target.get(f"/runs/{run_id}").json()["publish_status"] == "rejected"


def test_unknown_run(target):
    run_id = unique("norun")
    target.expect_error(target.get(f"/runs/{run_id}"), 404, f"no such run: {run_id}",
                        plain_in_python=True)
    target.expect_error(target.post(f"/runs/{run_id}", {"publish_status": "approved"}), 404,
                        f"no such run: {run_id}", plain_in_python=True)
    target.expect_error(target.get(f"/active-runs/{run_id}"), 404, f"no such run {run_id}",
                        plain_in_python=True)
    # 5.20: reason-JSON even in the Python runner.
    target.expect_error(target.finish(run_id, {"code": "success"}), 404, f"no such run {run_id}")


@pytest.mark.differs("Python crashes (500) on a missing or unknown publish_status, and on "
                     "approving a run without revision (409 here)")
def test_update_run_bad_input(target, queued, cleanup):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    start, finish = times()
    assert target.finish(run_id, {"code": "failed", "start_time": start.isoformat(),
                                  "finish_time": finish.isoformat()}).status == 201
    target.expect_error(target.post(f"/runs/{run_id}", {}), 400)
    target.expect_error(target.post(f"/runs/{run_id}", {"publish_status": "bogus"}), 400)
    target.expect_error(target.post(f"/runs/{run_id}", data=b"{",
                                    headers={"Content-Type": "application/json"}), 400)
    target.expect_error(target.post(f"/runs/{run_id}", {"publish_status": "approved"}), 409)
    assert target.run_row(run_id)["publish_status"] == "unknown"


def test_schedule_from_run(target, queued, cleanup):
    # 5.7 / 5.8 with run_id: campaign and codebase (and main_branch_revision) from the run.
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    start, finish = times()
    assert target.finish(run_id, {"code": "success", "main_branch_revision": "git-v1:mbr",
                                  "start_time": start.isoformat(),
                                  "finish_time": finish.isoformat()}).status == 201
    resp = target.post("/schedule", {"run_id": run_id, "bucket": "manual"})
    assert resp.status == 200, resp
    body = resp.json()
    assert body["campaign"] == target.campaign and body["codebase"] == codebase
    assert body["bucket"] == "manual"
    rows = [r for r in target.queue_rows(codebase) if r["suite"] == target.campaign]
    assert [r["id"] for r in rows] == [body["queue_id"]] and rows[0]["bucket"] == "manual"
    resp = target.post("/schedule-control", {"run_id": run_id, "requester": "control test"})
    assert resp.status == 200, resp
    body = resp.json()
    assert body["campaign"] == "control" and body["codebase"] == codebase
    [control] = [r for r in target.queue_rows(codebase) if r["suite"] == "control"]
    assert control["id"] == body["queue_id"]
    assert control["command"] == "brz up --revision=git-v1:mbr"


def test_finish_code_null_is_success(target, queued, cleanup):
    # 4.4: code present but null → success; no start/finish handling beyond the worker's.
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    start, finish = times()
    resp = target.finish(a["id"], {"code": None, "start_time": start.isoformat(),
                                   "finish_time": finish.isoformat()})
    assert resp.status == 201, resp
    body = resp.json()
    assert body["filenames"] == [] and body["logs"] == []
    assert body["artifacts"] is None          # no builder result
    assert body["result"]["code"] == "success"
    assert body["result"]["target"] == {}
    assert body["result"]["remotes"] is None
    assert body["result"]["branches"] is None and body["result"]["tags"] is None
    row = target.run_row(a["id"])
    assert row["result_code"] == "success"
    assert row["logfilenames"] == []
    assert row["result_tags"] is None
    assert target.rows("SELECT * FROM new_result_branch WHERE run_id = :'id'", id=a["id"]) == []


@pytest.mark.differs("DECISIONS.md worker contract 1: an absent code is success "
                     "(Python: missing-result-code)")
def test_finish_code_absent_is_success(target, queued, cleanup):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    start, finish = times()
    resp = target.finish(a["id"], {"start_time": start.isoformat(),
                                   "finish_time": finish.isoformat()})
    assert resp.status == 201, resp
    assert resp.json()["result"]["code"] == "success"
    assert target.run_row(a["id"])["result_code"] == "success"


@pytest.mark.differs("DECISIONS.md worker contract 2: RFC 3339 times with Z are stored as naive "
                     "UTC (Python: 500)")
def test_finish_with_utc_offset_times(target, queued, cleanup):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    start, finish = times()
    resp = target.finish(a["id"], {
        "code": "success", "start_time": start.isoformat() + "Z",
        "finish_time": (finish + datetime.timedelta(hours=2)).isoformat() + "+02:00"})
    assert resp.status == 201, resp
    assert resp.json()["result"]["duration"] == 240.0
    row = target.run_row(a["id"])
    assert parse_db_time(row["start_time"]) == start
    assert parse_db_time(row["finish_time"]) == finish


def test_finish_upload_errors_leave_run_active(target, queued, cleanup):
    codebase, _ = queued
    [queue_row] = target.queue_rows(codebase)
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    # 7.1: no result.json → 400 "Missing result JSON".
    resp = target.finish(run_id, None, [("worker.log", b"x")])
    target.expect_error(resp, 400, "Missing result JSON", plain_in_python=True)
    # A part without a filename → 400 "Part without filename".
    body, ctype = multipart([("metadata", "result.json", "application/json", b'{"code": "x"}'),
                             ("file", None, "text/plain", b"anonymous")])
    resp = request("POST", f"{target.url}/active-runs/{run_id}/finish", data=body,
                   headers={"Content-Type": ctype})
    target.expect_error(resp, 400, "Part without filename", plain_in_python=True)
    # Nothing was stored: the run is still active and its queue row still there.
    assert target.run_row(run_id) is None
    assert target.get(f"/active-runs/{run_id}").status == 200
    assert [r["id"] for r in target.queue_rows(codebase)] == [queue_row["id"]]


@pytest.mark.differs("Python writes outside its directory, or crashes (500), on these uploads")
@pytest.mark.parametrize("case", ["traversal", "absolute", "not-multipart", "bad-json",
                                  "nested-dirs"])
def test_finish_bad_upload_is_400(target, queued, cleanup, case):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    url = f"{target.url}/active-runs/{run_id}/finish"
    start, finish = times()
    good = ('{"code": "success", "start_time": "%s", "finish_time": "%s"}'
            % (start.isoformat(), finish.isoformat())).encode()
    if case == "not-multipart":
        resp = request("POST", url, data=good, headers={"Content-Type": "application/json"})
    elif case == "bad-json":
        body, ctype = multipart([("metadata", "result.json", "application/json", b"{nope")])
        resp = request("POST", url, data=body, headers={"Content-Type": ctype})
    else:
        name = {"traversal": "../escape.log", "absolute": "/tmp/parity-escape.log",
                "nested-dirs": "a/b.log"}[case]
        body, ctype = multipart([("metadata", "result.json", "application/json", good),
                                 ("file", name, "text/plain", b"evil")])
        resp = request("POST", url, data=body, headers={"Content-Type": ctype})
    target.expect_error(resp, 400)
    assert target.run_row(run_id) is None
    assert target.get(f"/active-runs/{run_id}").status == 200
    if target.logs_dir:
        assert not os.path.exists(os.path.join(target.logs_dir, codebase, run_id))


def test_assign_queue_empty(target, codebase):
    resp = target.assign(codebase)
    target.expect_error(resp, 503, "queue empty")
    assert "Retry-After" not in resp.headers


@pytest.mark.differs("DECISIONS.md 11: the campaign filter works (Python: SQL error, 500)")
def test_assign_campaign_filter(target, queued, cleanup):
    codebase, success = queued
    target.expect_error(target.assign(codebase, campaign=unique("other")), 503, "queue empty")
    _, a = assign_own(target, codebase, cleanup, campaign=target.campaign)
    assert a["queue_id"] == success["queue-id"]


@pytest.mark.differs("Python crashes (500) on malformed JSON and on a backchannel without kind")
@pytest.mark.parametrize("body", [b"{", b"[]", b'{"backchannel": {"url": "http://x/"}}',
                                  b'{"backchannel": {"kind": "http"}}'])
def test_assign_bad_input_is_400(target, queued, body):
    codebase, _ = queued
    body = body.replace(b"{\"backchannel\"", b'{"codebase": "%s", "backchannel"' % codebase.encode())
    resp = target.post("/active-runs", data=body, headers={"Content-Type": "application/json"})
    target.expect_error(resp, 400)
    assert not [r for r in target.get("/active-runs").json() if r["codebase"] == codebase]


def test_not_in_vcs_abort(target, cleanup):
    # 6 C9: no branch URL and a campaign that is not default_empty → run not-in-vcs, 503.
    codebase = unique("cb")
    assert target.post("/codebases", [{"name": codebase}]).status == 200
    success = target.upload_candidate(codebase, command="echo x", context="nv")
    resp = target.assign(codebase)
    if resp.status == 201:
        cleanup.append(resp.json()["id"])
        assert resp.json()["branch"]["default-empty"] is True
        pytest.skip(f"campaign {target.campaign} is default_empty")
    target.expect_error(resp, 503, "queue empty")
    runs = target.rows(
        "SELECT id, result_code, description, failure_transient, logfilenames, branch_url,"
        " subpath, suite, command, instigated_context, codebase, change_set, resume_from,"
        " worker_link FROM run WHERE codebase = :'c'", c=codebase)
    assert runs, "no run recorded"
    if target.rust:
        assert len(runs) == 1   # differences.md: never finishes the same candidate twice
    for run in runs:
        assert UUID4.match(run["id"])
        assert run == {
            "id": run["id"], "result_code": "not-in-vcs",
            "description": "No VCS URL known for codebase.", "failure_transient": None,
            "logfilenames": [], "branch_url": None, "subpath": None, "suite": target.campaign,
            "command": "echo x", "instigated_context": "nv", "codebase": codebase,
            "change_set": run["id"], "resume_from": None, "worker_link": None}
    # The item was finished: its queue row is gone (it may be queued again, with a new id).
    assert success["queue-id"] not in [r["id"] for r in target.queue_rows(codebase)]


def test_unknown_campaign_abort(target, codebase):
    campaign = unique("gone")
    target.execute("INSERT INTO queue (codebase, suite, command, context) VALUES"
                   " (:'c', :'k', 'echo gone', 'uc')", c=codebase, k=campaign)
    resp = target.assign(codebase)
    target.expect_error(resp, 503, "queue empty")
    [run] = target.rows("SELECT id, result_code, description, suite, failure_transient,"
                        " branch_url, vcs_type::text AS vcs_type, logfilenames, command,"
                        " instigated_context, change_set FROM run WHERE codebase = :'c'",
                        c=codebase)
    assert run == {"id": run["id"], "result_code": "unknown-campaign",
                   "description": f"Campaign {campaign} unknown", "suite": campaign,
                   "failure_transient": None,
                   "branch_url": f"http://127.0.0.1:9/git/{codebase}", "vcs_type": "git",
                   "logfilenames": [], "command": "echo gone", "instigated_context": "uc",
                   "change_set": run["id"]}
    # No candidate exists, so nothing is queued again.
    assert target.queue_rows(codebase) == []


@pytest.mark.local_only("needs a default_empty campaign")
@pytest.mark.differs("DECISIONS.md worker contract 4: branch subpath \"\" and the effective "
                     "vcs_type (Python: null)")
def test_default_empty_campaign(target, cleanup):
    codebase = unique("cb")
    assert target.post("/codebases", [{"name": codebase}]).status == 200
    resp = target.post("/candidates", [{"codebase": codebase, "campaign": target.empty_campaign}])
    assert resp.status == 200 and len(resp.json()["success"]) == 1, resp
    resp = target.assign(codebase)
    assert resp.status == 201, resp
    a = resp.json()
    cleanup.append(a["id"])
    assert a["campaign"] == target.empty_campaign
    assert a["branch"]["default-empty"] is True
    assert a["branch"]["url"] is None
    # DECISIONS.md worker contract 4: subpath "" and vcs_type the effective "git" (6 E5).
    assert a["branch"]["subpath"] == ""
    assert a["branch"]["vcs_type"] == "git"
    assert a["force-build"] is True and a["skip-setup-validation"] is True
    assert a["command"] == "true"
    assert a["build"] == {"target": "generic", "environment": {},
                          "config": {"dep_server_url": None}}
    assert a["target_repository"]["url"] == f"{target.vcs_base}/git/{codebase}"


# -- the public (worker) app, section 9 ------------------------------------------------------

def test_public_assign_needs_credentials(target, queued, worker_login):
    codebase, _ = queued
    responses = []
    for headers in ({}, basic_auth(worker_login[0], "wrong-password"),
                    basic_auth(unique("nobody"), "pw")):
        headers = dict(headers, **{"Content-Type": "application/json"})
        resp = target.public("POST", "/runner/active-runs",
                             data=b'{"codebase": "%s"}' % codebase.encode(), headers=headers)
        assert resp.status == 401, resp
        assert resp.headers.get("WWW-Authenticate") == 'Basic Realm="Janitor"'
        responses.append(resp)
    assert not [r for r in target.get("/active-runs").json() if r["codebase"] == codebase]
    # 9.4: a missing header and credentials without a matching row give the same 401,
    # "worker login required".
    for resp in responses:
        target.expect_error(resp, 401, "worker login required", plain_in_python=True)


@pytest.mark.differs("a non-Basic or malformed Authorization header is a 401 (Python: 500)")
@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!notbase64", "Basic bm9jb2xvbg=="])
def test_public_malformed_authorization(target, queued, header):
    codebase, _ = queued
    resp = target.public("POST", "/runner/active-runs",
                         data=b'{"codebase": "%s"}' % codebase.encode(),
                         headers={"Authorization": header, "Content-Type": "application/json"})
    # The message is not specified for these (Python crashes); the 401 of 9.4 is.
    target.expect_error(resp, 401, "worker login required", prefix=True)
    assert resp.headers.get("WWW-Authenticate") == 'Basic Realm="Janitor"'



def test_public_assign_and_finish(target, queued, worker_login, cleanup):
    codebase, success = queued
    login, password = worker_login
    auth = basic_auth(login, password)
    resp = target.public("POST", "/runner/active-runs",
                         data=b'{"codebase": "%s", "worker": "someone-else"}' % codebase.encode(),
                         headers=dict(auth, **{"Content-Type": "application/json"}))
    assert resp.status == 201, resp
    a = resp.json()
    cleanup.append(a["id"])
    run_id = a["id"]
    assert resp.headers.get("Location") == f"/runner/active-runs/{run_id}"
    assert set(a) == ASSIGNMENT_KEYS
    assert a["queue_id"] == success["queue-id"]
    # The worker name is the login; a worker key in the body is ignored (9.2).
    resp = target.public("GET", f"/runner/active-runs/{run_id}")
    assert resp.status == 200, resp
    active = resp.json()
    assert set(active) == ACTIVE_RUN_KEYS
    assert active["worker"] == login
    assert active["backchannel"] == {}
    assert target.get(f"/active-runs/{run_id}").json()["worker"] == login

    start, finish = times()
    result = {"code": "success", "start_time": start.isoformat(),
              "finish_time": finish.isoformat(), "target": {"name": "generic", "details": None}}
    # Without credentials: 401 (the run exists, so Python also gets past its lookup).
    resp = target.finish(run_id, result, public_auth={})
    target.expect_error(resp, 401, "worker login required", plain_in_python=True)
    assert target.run_row(run_id) is None

    resp = target.finish(run_id, result, [("worker.log", b"public log\n")], public_auth=auth)
    assert resp.status == 201, resp
    assert "Location" not in resp.headers
    body = resp.json()
    assert body["id"] == run_id and body["logs"] == ["worker.log"]
    assert body["artifacts"] is None          # details: null → no builder result (4.4)
    assert body["result"]["target"] == {}
    row = target.run_row(run_id)
    assert row["worker"] == login
    assert row["result_code"] == "success"
    assert row["logfilenames"] == ["worker.log"]
    target.expect_error(target.public("GET", f"/runner/active-runs/{run_id}"), 404,
                        f"no such run {run_id}", plain_in_python=True)
    # Finished: the public finish of the stored run answers 409 (Python: 404 with a JSON
    # reason, 9.3).
    resp = target.finish(run_id, result, public_auth=auth)
    target.expect_finish_of_stored_run(resp, run_id)


@pytest.mark.differs("credentials are checked before the run lookup (Python: 404 before 401)")
def test_public_finish_unknown_run(target, worker_login):
    run_id = unique("norun")
    resp = target.finish(run_id, {"code": "success"}, public_auth={})
    target.expect_error(resp, 401, "worker login required")
    resp = target.finish(run_id, {"code": "success"}, public_auth=basic_auth(*worker_login))
    target.expect_error(resp, 404, f"no such run {run_id}")


# -- more of assignment and finish -----------------------------------------------------------

def test_jenkins_backchannel(target, queued, cleanup):
    # 4.1: a Jenkins backchannel is stored as {"my_url": url, "jenkins": null}.
    codebase, _ = queued
    url = "https://jenkins.example.org/job/parity/1/"
    _, a = assign_own(target, codebase, cleanup, backchannel={"kind": "jenkins", "url": url})
    active = target.get(f"/active-runs/{a['id']}").json()
    assert active["backchannel"] == {"my_url": url, "jenkins": None}


def test_no_backchannel(target, queued, cleanup):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup, backchannel=None, worker_link=None)
    active = target.get(f"/active-runs/{a['id']}").json()
    assert active["backchannel"] == {}
    assert active["worker_link"] is None


def test_debian_result_without_changes_files(target, queued, cleanup):
    # 4.5 / 7.2 step 5: a Debian result without .changes files is empty: target {},
    # artifacts [], no debian_build row.
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    start, finish = times()
    resp = target.finish(a["id"], {
        "code": "success", "start_time": start.isoformat(), "finish_time": finish.isoformat(),
        "target": {"name": "debian", "details": {"lintian": {"version": "2.0"}}}},
        [("build.log", b"dpkg-buildpackage\n")])
    assert resp.status == 201, resp
    body = resp.json()
    assert body["artifacts"] == []
    assert body["result"]["target"] == {}
    assert body["logs"] == ["build.log"]
    assert target.rows("SELECT * FROM debian_build WHERE run_id = :'id'", id=a["id"]) == []
    assert target.run_row(a["id"])["result_code"] == "success"


def insert_run_row(target, run_id, codebase):
    target.execute(
        "INSERT INTO change_set (id, campaign) VALUES (:'id', :'k');"
        " INSERT INTO run (id, command, result_code, suite, logfilenames, change_set, codebase,"
        " start_time, finish_time) VALUES (:'id', 'preexisting', 'preexisting', :'k', '{}',"
        " :'id', :'c', now() at time zone 'utc', now() at time zone 'utc')",
        id=run_id, k=target.campaign, c=codebase)


def test_public_finish_of_stored_run_is_409(target, queued, worker_login, cleanup):
    # 9.3: a run id already in `run` → 409 {"id": <id>, "reason": <id>}; the run is unclaimed
    # and the transaction rolled back (7.3 step 2), so the queue row stays.
    codebase, success = queued
    auth = basic_auth(*worker_login)
    resp = target.public("POST", "/runner/active-runs",
                         data=b'{"codebase": "%s"}' % codebase.encode(),
                         headers=dict(auth, **{"Content-Type": "application/json"}))
    assert resp.status == 201, resp
    run_id = resp.json()["id"]
    cleanup.append(run_id)
    insert_run_row(target, run_id, codebase)
    start, finish = times()
    resp = target.finish(run_id, {"code": "success", "start_time": start.isoformat(),
                                  "finish_time": finish.isoformat()}, public_auth=auth)
    assert resp.status == 409, resp
    assert target.run_row(run_id)["result_code"] == "preexisting"
    assert target.get(f"/active-runs/{run_id}").status == 404
    assert [r["id"] for r in target.queue_rows(codebase)] == [success["queue-id"]]
    # The reason is the exception text, which is just the id (9.3).
    assert resp.json() == {"id": run_id, "reason": run_id}


@pytest.mark.differs("DECISIONS.md 9: the admin finish answers 409 {id, reason} (Python: 500)")
def test_admin_finish_of_stored_run_is_409(target, queued, cleanup):
    codebase, success = queued
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    insert_run_row(target, run_id, codebase)
    start, finish = times()
    resp = target.finish(run_id, {"code": "success", "start_time": start.isoformat(),
                                  "finish_time": finish.isoformat()})
    assert resp.status == 409, resp
    body = resp.json()
    assert set(body) == {"id", "reason"} and body["id"] == run_id
    assert target.run_row(run_id)["result_code"] == "preexisting"
    assert target.get(f"/active-runs/{run_id}").status == 404
    assert [r["id"] for r in target.queue_rows(codebase)] == [success["queue-id"]]


def test_peek_changes_nothing(target, queued):
    before = target.get("/active-runs").json()
    queue_before = target.rows("SELECT id FROM queue ORDER BY id")
    resp = target.get("/active-runs/+peek")
    if resp.status == 503:
        target.expect_error(resp, 503, "queue empty")
        return
    assert resp.status == 201, resp
    a = resp.json()
    assert set(a) == ASSIGNMENT_KEYS
    assert resp.headers.get("Location") == f"/active-runs/{a['id']}"
    # The head of the queue in queue order, among items not being processed.
    busy = {r["queue_id"] for r in before}
    head = [r["id"] for r in target.rows("SELECT id FROM queue ORDER BY bucket, priority, id")
            if r["id"] not in busy]
    assert a["queue_id"] == head[0]
    assert target.get(f"/active-runs/{a['id']}").status == 404
    assert target.run_row(a["id"]) is None
    assert [r["id"] for r in target.get("/active-runs").json()] == [r["id"] for r in before]
    assert target.rows("SELECT id FROM queue ORDER BY id") == queue_before


def test_queue_position_wait_divides_by_active_runs(target, queued, cleanup):
    # 5.6: wait_time = cumulative wait / number of active runs.
    codebase, _ = queued
    busy = target.new_codebase()
    target.upload_candidate(busy, command="echo busy")
    assign_own(target, busy, cleanup)
    active = len(target.get("/active-runs").json())
    assert active >= 1
    body = target.get(f"/queue/position?codebase={codebase}&campaign={target.campaign}").json()
    assert body["cumulative_wait_time"] is not None
    assert body["wait_time"] == body["cumulative_wait_time"] / active


def test_finish_field_rules(target, queued, worker_login, cleanup):
    # 4.4: value 0 → null; a falsy codemod is stored as NULL; transient stored; the worker's
    # worker_name is used when the run has none (7.2 step 1); whole-second times print without
    # a fraction (1.2); log names per 7.2 step 2.
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    finish = naive_utc_now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    start = finish - datetime.timedelta(seconds=30)
    files = [(name, b"content of " + name.encode()) for name in
             ("x.log", "y.log.12", "z.log.", "w.log.txt", "v.logs", "u.log.1.2")]
    resp = target.finish(run_id, {
        "code": "build-failed", "description": None, "value": 0, "codemod": {},
        "transient": True, "worker_name": worker_login[0], "stage": "build",
        "start_time": start.isoformat(), "finish_time": finish.isoformat()}, files)
    assert resp.status == 201, resp
    body = resp.json()
    assert sorted(body["logs"]) == ["x.log", "y.log.12", "z.log."]
    assert body["filenames"] == [name for name, _ in files]
    r = body["result"]
    assert r["start_time"] == start.isoformat() and "." not in r["start_time"]
    assert r["finish_time"] == finish.isoformat()
    assert r["duration"] == 30.0
    assert r["value"] is None
    assert r["codemod"] == {}
    assert r["transient"] is True
    assert r["description"] is None
    assert r["code"] == "build-failed"
    row = target.run_row(run_id)
    assert row["value"] is None
    assert row["result"] is None
    assert row["failure_transient"] is True
    assert row["failure_stage"] == "build"
    assert row["worker"] == worker_login[0]
    assert sorted(row["logfilenames"]) == ["x.log", "y.log.12", "z.log."]
    if target.logs_dir:
        stored = sorted(os.listdir(os.path.join(target.logs_dir, codebase, run_id)))
        assert stored == ["x.log.gz", "y.log.12.gz", "z.log..gz"]


@pytest.mark.differs("a worker name missing from the worker table is dropped (Python: 500 "
                     "on the foreign key)")
def test_finish_unknown_worker_name_is_dropped(target, queued, cleanup):
    codebase, _ = queued
    _, a = assign_own(target, codebase, cleanup)
    start, finish = times()
    resp = target.finish(a["id"], {"code": "success", "worker_name": unique("ghost"),
                                   "start_time": start.isoformat(),
                                   "finish_time": finish.isoformat()})
    assert resp.status == 201, resp
    assert target.run_row(a["id"])["worker"] is None


def test_finish_worker_codebase_overrides(target, queued, cleanup):
    # 7.2 step 3 / models 1.6: a non-empty worker `codebase` overrides the stored run's
    # codebase, while the logs are filed under the active run's codebase (3.3).
    codebase, _ = queued
    other = target.new_codebase()
    _, a = assign_own(target, codebase, cleanup)
    run_id = a["id"]
    start, finish = times()
    resp = target.finish(run_id, {"code": "success", "codebase": other,
                                  "start_time": start.isoformat(),
                                  "finish_time": finish.isoformat()},
                         [("worker.log", b"w")])
    assert resp.status == 201, resp
    assert resp.json()["result"]["codebase"] == other
    assert target.run_row(run_id)["codebase"] == other
    if target.logs_dir:
        assert os.path.exists(os.path.join(target.logs_dir, codebase, run_id, "worker.log.gz"))
