"""Candidate upload, download and deletion, and the scheduling an upload does (http-api.md
5.11-5.13, queue-and-scheduling.md 1.3, 2.3-2.5, 2.7.3)."""

import json

import pytest

from jr_http import python_cost_offset, unique

SUCCESS_KEYS = {"campaign", "codebase", "bucket", "change_set", "offset", "estimated_duration",
                "queue-id", "refresh"}
REPORT_KEYS = {"success", "invalid_command", "invalid_value", "unknown_campaigns",
               "unknown_codebases", "unknown_publish_policies"}
CANDIDATE_KEYS = {"id", "codebase", "campaign", "command", "publish-policy", "change_set",
                  "context", "value", "success_chance"}


def db_candidates(target, codebase):
    return target.rows(
        "SELECT id, suite, context, value, success_chance, command, publish_policy, change_set,"
        " codebase FROM candidate WHERE codebase = :'c' ORDER BY id", c=codebase)


def test_upload_stores_and_queues(target, codebase):
    duration = target.campaign_duration(codebase, target.campaign)
    base = target.min_priority()
    resp = target.post("/candidates", [{
        "codebase": codebase, "campaign": target.campaign, "command": "echo hi",
        "context": "some-context", "success_chance": 0.5}])
    assert resp.status == 200, resp
    body = resp.json()
    assert REPORT_KEYS <= set(body), body
    for key in REPORT_KEYS - {"success"}:
        assert body[key] == [], (key, body)
    [success] = body["success"]
    assert set(success) == SUCCESS_KEYS
    offset = python_cost_offset(duration)
    assert success["campaign"] == target.campaign
    assert success["codebase"] == codebase
    assert success["bucket"] == "default"
    assert success["change_set"] is None
    assert success["refresh"] is False
    assert success["estimated_duration"] == duration.total_seconds()
    assert success["offset"] == offset
    assert isinstance(success["queue-id"], int)

    [candidate] = db_candidates(target, codebase)
    assert candidate == {
        "id": candidate["id"], "suite": target.campaign, "context": "some-context",
        "value": None, "success_chance": 0.5, "command": "echo hi", "publish_policy": None,
        "change_set": None, "codebase": codebase}

    [row] = target.queue_rows(codebase)
    assert row["id"] == success["queue-id"]
    assert row["bucket"] == "default"
    assert row["suite"] == target.campaign
    assert row["command"] == "echo hi"
    assert row["context"] == "some-context"
    assert row["refresh"] is False
    assert row["requester"] == "candidate update"
    assert row["change_set"] is None
    assert float(row["estimated_duration"]) == duration.total_seconds()
    # 1.3: priority = min(priority over the queue, or 0) + trunc(offset).
    assert row["priority"] == base + int(offset)


def test_download_candidates(target, codebase):
    target.upload_candidate(codebase, command="echo dl", value=7, context="c1")
    resp = target.get("/candidates")
    assert resp.status == 200, resp
    mine = [c for c in resp.json() if c["codebase"] == codebase]
    assert len(mine) == 1
    [candidate] = mine
    assert set(candidate) == CANDIDATE_KEYS
    [row] = db_candidates(target, codebase)
    assert candidate == {
        "id": row["id"], "codebase": codebase, "campaign": target.campaign,
        "command": "echo dl", "publish-policy": None, "change_set": None, "context": "c1",
        "value": 7, "success_chance": None}


def test_candidate_value_gives_first_run_bonus(target, codebase):
    # 2.5: cv = value + 100 when there is no history.
    duration = target.campaign_duration(codebase, target.campaign)
    success = target.upload_candidate(codebase, command="echo v", value=50)
    assert success["offset"] == python_cost_offset(duration, 50)
    assert [r["id"] for r in target.queue_rows(codebase)] == [success["queue-id"]]


def test_campaign_command_is_the_fallback(target, codebase):
    # 5.12 step 3: no command → the campaign's configured command.
    target.upload_candidate(codebase)
    [candidate] = db_candidates(target, codebase)
    assert candidate["command"]
    [row] = target.queue_rows(codebase)
    assert row["command"] == candidate["command"]
    if target.local:
        assert candidate["command"] == "echo default-command"


def test_bucket_and_requester(target, codebase):
    # 5.12 step 6: the candidate's bucket; requester "candidate update" + " " + requester.
    success = target.upload_candidate(codebase, command="echo b", bucket="manual",
                                      requester="someone")
    assert success["bucket"] == "manual"
    [row] = target.queue_rows(codebase)
    assert row["bucket"] == "manual"
    assert row["requester"] == "candidate update someone"


def test_reupload_updates_the_same_row(target, codebase):
    first = target.upload_candidate(codebase, command="echo one")
    second = target.upload_candidate(codebase, command="echo two", context="new")
    assert second["queue-id"] == first["queue-id"]
    [candidate] = db_candidates(target, codebase)
    assert candidate["command"] == "echo two" and candidate["context"] == "new"
    [row] = target.queue_rows(codebase)
    assert row["command"] == "echo two" and row["context"] == "new"


def test_unknown_campaign_is_reported_and_skipped(target, codebase):
    campaign = unique("nocampaign")
    resp = target.post("/candidates", [{"codebase": codebase, "campaign": campaign,
                                        "command": "true"}])
    assert resp.status == 200, resp
    body = resp.json()
    assert body["success"] == []
    assert body["unknown_campaigns"] == [campaign]
    assert body["unknown_codebases"] == []
    assert db_candidates(target, codebase) == []
    assert target.queue_rows(codebase) == []


def test_unknown_codebase_is_reported_and_skipped(target):
    name = unique("nocodebase")
    resp = target.post("/candidates", [{"codebase": name, "campaign": target.campaign,
                                        "command": "true"}])
    assert resp.status == 200, resp
    body = resp.json()
    assert body["success"] == []
    assert body["unknown_codebases"] == [name]
    assert body["unknown_campaigns"] == []
    assert db_candidates(target, name) == []


def test_unknown_publish_policy_is_reported(target, codebase):
    policy = unique("policy")
    resp = target.post("/candidates", [{"codebase": codebase, "campaign": target.campaign,
                                        "command": "true", "publish-policy": policy}])
    assert resp.status == 200, resp
    body = resp.json()
    assert body["success"] == []
    assert body["unknown_publish_policies"] == [policy]
    assert db_candidates(target, codebase) == []


def test_zero_value_is_invalid(target, codebase):
    resp = target.post("/candidates", [{"codebase": codebase, "campaign": target.campaign,
                                        "command": "true", "value": 0}])
    assert resp.status == 200, resp
    body = resp.json()
    assert body["success"] == []
    # The value as sent (Python adds candidate.get("value") to a set).
    assert body["invalid_value"] == [0]
    assert db_candidates(target, codebase) == []


def test_mixed_batch(target, codebase):
    other = target.new_codebase()
    campaign = unique("nocampaign")
    resp = target.post("/candidates", [
        {"codebase": codebase, "campaign": target.campaign, "command": "echo a"},
        {"codebase": codebase, "campaign": campaign, "command": "echo b"},
        {"codebase": other, "campaign": target.campaign, "command": "echo c"},
    ])
    assert resp.status == 200, resp
    body = resp.json()
    assert sorted(s["codebase"] for s in body["success"]) == sorted([codebase, other])
    assert body["unknown_campaigns"] == [campaign]
    assert len(target.queue_rows(codebase)) == 1
    assert len(target.queue_rows(other)) == 1


@pytest.mark.parametrize("candidate,message", [
    ({"campaign": "CAMPAIGN", "command": "true"}, "no codebase field for candidate "),
    ({"codebase": None, "campaign": "CAMPAIGN"}, "codebase field is None for candidate "),
    ({"codebase": "CODEBASE", "command": "true"}, "no campaign field for candidate "),
])
def test_bad_candidate_rolls_back_whole_upload(target, codebase, candidate, message):
    # 5.12 step 1: 400, and every candidate of the request is rolled back.
    candidate = json.loads(json.dumps(candidate).replace("CAMPAIGN", target.campaign)
                           .replace("CODEBASE", codebase))
    resp = target.post("/candidates", [
        {"codebase": codebase, "campaign": target.campaign, "command": "echo first"},
        candidate])
    target.expect_error(resp, 400, message, prefix=True, plain_in_python=True)
    assert db_candidates(target, codebase) == []
    assert target.queue_rows(codebase) == []


@pytest.mark.differs("Python crashes (500) on a negative value; here 400")
def test_negative_value_is_400(target, codebase):
    resp = target.post("/candidates", [
        {"codebase": codebase, "campaign": target.campaign, "command": "echo ok"},
        {"codebase": codebase, "campaign": target.campaign, "command": "true", "value": -3,
         "change_set": None, "context": "neg"}])
    target.expect_error(resp, 400)
    assert db_candidates(target, codebase) == []


@pytest.mark.differs("Python crashes (500) on malformed JSON or a non-list body")
@pytest.mark.parametrize("body", [b"", b"[{", b'{"codebase": "x"}', b"[1]"])
def test_malformed_json_is_400(target, body):
    resp = target.post("/candidates", data=body, headers={"Content-Type": "application/json"})
    target.expect_error(resp, 400)


def test_delete_candidate_removes_queue_rows(target, codebase):
    target.upload_candidate(codebase, command="echo del")
    [candidate] = db_candidates(target, codebase)
    assert len(target.queue_rows(codebase)) == 1
    resp = target.delete(f"/candidates/{candidate['id']}")
    assert resp.status == 200, resp
    assert resp.json() == {}
    assert db_candidates(target, codebase) == []
    assert target.queue_rows(codebase) == []


@pytest.mark.differs("Python crashes (500) on an unknown or non-integer id")
def test_delete_unknown_candidate(target):
    missing = target.row("SELECT coalesce(max(id), 0) + 1000000 AS id FROM candidate")["id"]
    target.expect_error(target.delete(f"/candidates/{missing}"), 404)
    target.expect_error(target.delete("/candidates/not-a-number"), 400)
