"""Queue listing, positions and the scheduling routes (http-api.md 5.5-5.8,
queue-and-scheduling.md 1.3, 1.5, 2.6, 2.7)."""

import datetime

import pytest

from jr_http import parse_interval_seconds, unique

SCHEDULE_KEYS = {"campaign", "offset", "bucket", "codebase", "queue_id",
                 "estimated_duration_seconds"}
BUCKETS = ["update-existing-mp", "manual", "control", "hook", "reschedule", "update-new-mp",
           "missing-deps", "default"]


def expected_position(target, codebase, campaign):
    """Position and cumulative wait of the first row of (codebase, campaign), counted over the
    whole queue in (bucket, priority, id) order (1.5)."""
    rows = target.rows(
        "SELECT id, codebase, suite, extract(epoch FROM estimated_duration)::text AS d"
        " FROM queue ORDER BY bucket, priority, id")
    # The view's wait_time is the running sum up to and including the row minus the row's own
    # duration: NULL when every duration so far (own included) is NULL.
    total, known = datetime.timedelta(0), False
    for position, row in enumerate(rows, 1):
        if row["codebase"] == codebase and row["suite"] == campaign:
            known = known or row["d"] is not None
            return position, (total.total_seconds() if known else None)
        if row["d"] is not None:
            total += parse_interval_seconds(row["d"])
            known = True
    return None, None


QUEUE_CRASH = "Python crashes (500) on GET /queue: it awaits an async generator"
WAIT_CRASH = ("Python crashes (500) on /queue/position with no run active: it divides the wait "
              "by zero (DECISIONS.md 11)")


def per_run_wait(cumulative, active):
    """The wait spread over the active runs as Python computes it: a timedelta divided by an
    int, in whole microseconds rounded half to even."""
    return (datetime.timedelta(seconds=cumulative) / active).total_seconds()


@pytest.mark.differs(QUEUE_CRASH)
def test_queue_lists_items_in_order(target):
    first, second = target.new_codebase(), target.new_codebase()
    a = target.upload_candidate(first, command="echo first", context="ctx-a")
    b = target.upload_candidate(second, command="echo second", bucket="manual")
    resp = target.get("/queue")
    assert resp.status == 200, resp
    body = resp.json()
    assert isinstance(body, list)
    for item in body:
        assert set(item) == {"queue_id", "codebase", "campaign", "context", "command"}, item
    mine = [item for item in body if item["codebase"] in (first, second)]
    # The manual bucket is served before default.
    assert mine == [
        {"queue_id": b["queue-id"], "codebase": second, "campaign": target.campaign,
         "context": None, "command": "echo second"},
        {"queue_id": a["queue-id"], "codebase": first, "campaign": target.campaign,
         "context": "ctx-a", "command": "echo first"},
    ]
    # The whole listing is in queue order.
    order = target.rows("SELECT id FROM queue ORDER BY bucket, priority, id")
    ids = [item["queue_id"] for item in body]
    assert ids == [r["id"] for r in order if r["id"] in set(ids)]
    assert len(ids) == len(order)


@pytest.mark.differs(QUEUE_CRASH)
def test_queue_limit(target):
    for _ in range(3):
        target.upload_candidate(target.new_codebase(), command="echo limit")
    resp = target.get("/queue?limit=2")
    assert resp.status == 200, resp
    head = [r["id"] for r in target.rows("SELECT id FROM queue ORDER BY bucket, priority, id LIMIT 2")]
    assert [item["queue_id"] for item in resp.json()] == head
    # 5.5: limit 0 means no limit.
    everything = target.get("/queue?limit=0").json()
    assert len(everything) == target.row("SELECT count(*) AS n FROM queue")["n"]


@pytest.mark.differs("Python crashes (500) on a non-integer or negative limit")
@pytest.mark.parametrize("limit", ["abc", "-1"])
def test_queue_bad_limit(target, limit):
    target.expect_error(target.get(f"/queue?limit={limit}"), 400)


def test_queue_position(target, queued):
    codebase, success = queued
    position, cumulative = expected_position(target, codebase, target.campaign)
    active = len(target.get("/active-runs").json())
    if cumulative is not None and not active and not target.rust:
        pytest.skip("deliberate difference: " + WAIT_CRASH)
    resp = target.get(f"/queue/position?codebase={codebase}&campaign={target.campaign}")
    assert resp.status == 200, resp
    body = resp.json()
    assert set(body) == {"position", "wait_time", "cumulative_wait_time"}
    assert body["position"] == position
    assert body["cumulative_wait_time"] == cumulative
    if cumulative is None:
        assert body["wait_time"] is None
    elif active:
        assert body["wait_time"] == per_run_wait(cumulative, active)
    else:
        # DECISIONS.md 11: with no run active the per-run wait is null.
        assert body["wait_time"] is None


def test_queue_position_head_of_queue(target, queued):
    # /schedule with the default offset -1 gives priority min(priority) - 1 (queue-and-scheduling.md §2.6).
    codebase, _ = queued
    if not target.rust and not target.get("/active-runs").json():
        pytest.skip("deliberate difference: " + WAIT_CRASH)
    resp = target.post("/schedule", {"codebase": codebase, "campaign": target.campaign,
                                     "bucket": "update-existing-mp"})
    assert resp.status == 200, resp
    body = target.get(f"/queue/position?codebase={codebase}&campaign={target.campaign}").json()
    position, cumulative = expected_position(target, codebase, target.campaign)
    assert body["position"] == position
    assert body["cumulative_wait_time"] == cumulative
    # The first bucket, and a priority below every other row: the head of the whole queue,
    # with nothing ahead (its own duration is known, so the wait is 0, not null).
    assert body["position"] == 1
    assert body["cumulative_wait_time"] == 0.0


def test_queue_position_not_queued(target, codebase):
    resp = target.get(f"/queue/position?codebase={codebase}&campaign={target.campaign}")
    assert resp.status == 200, resp
    assert resp.json() == {"position": None, "wait_time": None, "cumulative_wait_time": None}


@pytest.mark.differs("Python crashes (500) without codebase or campaign")
@pytest.mark.parametrize("query", ["", "?codebase=x", "?campaign=y"])
def test_queue_position_missing_parameter(target, query):
    target.expect_error(target.get("/queue/position" + query), 400)


def test_schedule_by_codebase_and_campaign(target, queued):
    codebase, success = queued
    duration = target.schedule_duration(codebase, target.campaign)
    base = target.min_priority()
    resp = target.post("/schedule", {"codebase": codebase, "campaign": target.campaign,
                                     "bucket": "manual", "requester": "parity test"})
    assert resp.status == 200, resp
    body = resp.json()
    assert set(body) == SCHEDULE_KEYS
    assert body == {"campaign": target.campaign, "offset": -1.0, "bucket": "manual",
                    "codebase": codebase, "queue_id": success["queue-id"],
                    "estimated_duration_seconds": duration.total_seconds()}
    [row] = target.queue_rows(codebase)
    assert row["id"] == success["queue-id"]
    assert row["bucket"] == "manual"
    assert row["priority"] == base - 1
    assert row["requester"] == "parity test"
    # 2.6: do_schedule passes no context, so the row's context is cleared; the command is the
    # candidate's.
    assert row["context"] is None
    assert row["command"] == "FOO=bar echo 'hello world'"
    assert row["refresh"] is False


def test_schedule_defaults_and_refresh(target, codebase):
    # No candidate: the command comes from the campaign configuration (5.7 step 2).
    base = target.min_priority()
    resp = target.post("/schedule", {"codebase": codebase, "campaign": target.campaign,
                                     "refresh": True, "offset": -10})
    assert resp.status == 200, resp
    body = resp.json()
    assert body["bucket"] == "default"
    assert body["offset"] == -10.0
    assert body["estimated_duration_seconds"] == target.schedule_duration(
        codebase, target.campaign).total_seconds()
    [row] = target.queue_rows(codebase)
    assert row["id"] == body["queue_id"]
    assert row["bucket"] == "default"
    assert row["priority"] == base - 10
    assert row["refresh"] is True
    assert row["requester"] is None
    assert row["command"]
    if target.local:
        assert row["command"] == "echo default-command"


def test_schedule_less_urgent_bucket_changes_nothing(target, queued):
    # 1.3: a new bucket that sorts after the existing one changes nothing, and the answer
    # names the existing bucket.
    codebase, success = queued
    assert target.post("/schedule", {"codebase": codebase, "campaign": target.campaign,
                                     "bucket": "manual"}).status == 200
    [before] = target.queue_rows(codebase)
    resp = target.post("/schedule", {"codebase": codebase, "campaign": target.campaign,
                                     "bucket": "reschedule", "requester": "later"})
    assert resp.status == 200, resp
    assert resp.json()["bucket"] == "manual"
    assert resp.json()["queue_id"] == success["queue-id"]
    assert target.queue_rows(codebase) == [before]


def test_schedule_unknown_run_is_404(target):
    resp = target.post("/schedule", {"run_id": unique("norun")})
    target.expect_error(resp, 404, "Run not found")


@pytest.mark.differs("Python crashes (500) on an unknown campaign, bucket or missing codebase")
@pytest.mark.parametrize("body", [
    {"campaign": "CAMPAIGN"},
    {"codebase": "CODEBASE"},
    {"codebase": "CODEBASE", "campaign": "nosuchcampaign-parity"},
    {"codebase": "CODEBASE", "campaign": "CAMPAIGN", "bucket": "no-such-bucket"},
    {"codebase": "CODEBASE", "campaign": "CAMPAIGN", "offset": "soon"},
])
def test_schedule_bad_input_is_400(target, codebase, body):
    body = {k: (v.replace("CAMPAIGN", target.campaign).replace("CODEBASE", codebase)
                if isinstance(v, str) else v) for k, v in body.items()}
    target.expect_error(target.post("/schedule", body), 400)
    assert target.queue_rows(codebase) == []


def test_schedule_control(target, codebase):
    base = target.min_priority()
    duration = target.schedule_duration(codebase, "control")
    resp = target.post("/schedule-control", {"codebase": codebase,
                                             "main_branch_revision": "git-v1:abc123",
                                             "requester": "parity"})
    assert resp.status == 200, resp
    body = resp.json()
    assert set(body) == SCHEDULE_KEYS
    assert body["campaign"] == "control"
    assert body["codebase"] == codebase
    assert body["bucket"] == "control"
    assert body["offset"] == -1.0
    assert body["estimated_duration_seconds"] == duration.total_seconds()
    [row] = target.queue_rows(codebase)
    assert row["id"] == body["queue_id"]
    assert row["suite"] == "control"
    assert row["bucket"] == "control"
    assert row["command"] == "brz up --revision=git-v1:abc123"
    assert row["priority"] == base - 1
    assert row["requester"] == "parity"


def test_schedule_control_unknown_run_is_404(target):
    resp = target.post("/schedule-control", {"run_id": unique("norun"), "requester": None})
    target.expect_error(resp, 404, "Run not found")


@pytest.mark.differs("Python crashes (500) without requester or without codebase/revision")
@pytest.mark.parametrize("body", [
    {"codebase": "CODEBASE", "main_branch_revision": "x"},
    {"codebase": "CODEBASE", "requester": "r"},
])
def test_schedule_control_bad_input_is_400(target, codebase, body):
    body = {k: v.replace("CODEBASE", codebase) for k, v in body.items()}
    target.expect_error(target.post("/schedule-control", body), 400)
    assert target.queue_rows(codebase) == []


@pytest.mark.differs("Python crashes (500) on malformed JSON")
@pytest.mark.parametrize("path", ["/schedule", "/schedule-control"])
@pytest.mark.parametrize("body", [b"", b"{", b"[]"])
def test_schedule_malformed_json_is_400(target, path, body):
    resp = target.post(path, data=body, headers={"Content-Type": "application/json"})
    target.expect_error(resp, 400)


def test_schedule_with_estimated_duration(target, queued):
    # 5.7: a truthy estimated_duration (seconds) is used as given.
    codebase, success = queued
    resp = target.post("/schedule", {"codebase": codebase, "campaign": target.campaign,
                                     "estimated_duration": 90.5, "offset": 3})
    assert resp.status == 200, resp
    body = resp.json()
    assert body["estimated_duration_seconds"] == 90.5
    assert body["offset"] == 3.0
    [row] = target.queue_rows(codebase)
    assert row["id"] == success["queue-id"]
    assert parse_interval_seconds(row["estimated_duration"]).total_seconds() == 90.5
