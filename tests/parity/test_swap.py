"""The pieces a Python runner swaps in with one-line changes: a QueueProcessor on Redis alone,
the app of ``create_app`` (with and without a database), ``store_review``; on a real database,
a real Redis and a real listening server."""

import asyncio
import json
import os
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta

import pytest

import janitor_runner as jr
from _database import database, psql, query  # noqa: F401  (the fixture)


def http(method, url, body=None):
    """``(status, body)`` of one request (run in a thread: the server lives in this process)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def ahttp(method, url, body=None):
    return await asyncio.to_thread(http, method, url, body)


def redis_url():
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set")
    return url


def active_run(queue_id=12, log_id="some-id"):
    return jr.ActiveRun(
        campaign="test", change_set=None, command="blah", queue_id=queue_id, log_id=log_id,
        start_time=datetime.utcnow(), codebase="test-1.1", vcs_info={},
        backchannel=jr.Backchannel(), worker_name="tester", instigated_context=None,
        estimated_duration=timedelta(seconds=10))


def test_queue_processor_on_redis_alone():
    url = redis_url()

    async def main():
        qp = jr.QueueProcessor(None, url, run_timeout=30, redis_prefix=f"jrpy-{uuid.uuid4().hex}:")
        assert await qp.status_json() == {"avoid_hosts": [], "processing": [],
                                          "rate_limit_hosts": {}}
        until = datetime.utcnow() + timedelta(seconds=30)
        await qp.rate_limited("github.com", until)
        await qp.rate_limited("expired.example", datetime.utcnow() - timedelta(seconds=30))
        assert [x async for x in qp.rate_limited_hosts()] == [("github.com", until)]
        run = active_run()
        await qp.register_run(run)
        assert await qp.active_run_count() == 1
        assert (await qp.get_run("some-id")).queue_id == 12
        with pytest.raises(jr.QueueItemAlreadyClaimed):
            await qp.register_run(active_run(log_id="other-id"))
        # What needs the database says so, rather than reaching some other server.
        with pytest.raises(RuntimeError, match="without a database"):
            await qp.abort_run(run, "x", "y")
        await qp.unclaim_run("some-id")
        assert await qp.active_run_count() == 0
        qp.start_watchdog()
        assert qp._watch_dog is not None
        await qp.stop()
        assert qp._watch_dog is None

    asyncio.run(main())


def test_queue_processor_needs_a_database_or_redis():
    with pytest.raises(TypeError, match="database"):
        jr.QueueProcessor(None, None)


def test_queue_processor_takes_the_python_positional_parameters(database, tmp_path):
    async def main():
        pool = await jr.connect(database)
        logs = tmp_path / "logs"
        qp = jr.QueueProcessor(pool, None, 30, str(logs), None, {"git": str(tmp_path / "git")},
                               False, "Jane <jane@example.com>",
                               str(tmp_path / "backup" / "artifacts"),
                               str(tmp_path / "backup" / "logs"), {"avoided.example"})
        assert await qp.status_json() == {"avoid_hosts": ["avoided.example"], "processing": [],
                                          "rate_limit_hosts": {}}
        with pytest.raises(ValueError, match="backup"):
            jr.QueueProcessor(pool, None, backup_logfile_manager=str(tmp_path / "x"))
        with pytest.raises(TypeError, match="logfile_manager"):
            jr.QueueProcessor(pool, None, logfile_manager=object())
        await pool.close()

    asyncio.run(main())


def test_app_without_database_answers_what_it_can():
    async def main():
        app = await jr.create_app(None)
        try:
            assert await ahttp("GET", app.internal_url + "/health") == (200, "ok")
            assert await ahttp("GET", app.internal_url + "/ready") == (200, "ok")
            status, body = await ahttp("GET", app.internal_url + "/queue")
            assert status == 503
            assert "without a database" in json.loads(body)["reason"]
            status, body = await ahttp("POST", app.internal_url + "/active-runs", {})
            assert status == 503
        finally:
            await app.stop()

    asyncio.run(main())


def test_app_of_a_redis_processor_serves_its_registry():
    url = redis_url()

    async def main():
        qp = jr.QueueProcessor(None, url, redis_prefix=f"jrpy-{uuid.uuid4().hex}:")
        await qp.register_run(active_run())
        app = await jr.create_app(qp)
        try:
            status, body = await ahttp("GET", app.internal_url + "/status")
            assert status == 200
            assert [run["id"] for run in json.loads(body)["processing"]] == ["some-id"]
            status, body = await ahttp("GET", app.internal_url + "/active-runs/some-id")
            assert status == 200 and json.loads(body)["queue_id"] == 12
            status, _ = await ahttp("GET", app.internal_url + "/codebases")
            assert status == 503
        finally:
            await app.stop()
            await qp.unclaim_run("some-id")

    asyncio.run(main())


def test_app_takes_the_config_and_the_processor_follows(database, tmp_path):
    config = tmp_path / "janitor.conf"
    config.write_text('campaign {\n  name: "swap-campaign"\n  command: "true"\n'
                      '  generic_build {\n  }\n}\n')

    async def main():
        pool = await jr.connect(database)
        qp = jr.QueueProcessor(pool)
        app = await jr.create_app(qp, str(config), pool)
        try:
            status, body = await ahttp("POST", app.internal_url + "/candidates",
                                       [{"campaign": "swap-campaign", "codebase": "alpha"}])
            assert status == 200, body
            assert [s["campaign"] for s in json.loads(body)["success"]] == ["swap-campaign"]
        finally:
            await app.stop()
        # The processor now knows the app's campaign: its queue item is valid for it.
        item, _ = await qp.next_queue_item(codebase="alpha", campaign="swap-campaign")
        assert item is not None and item.command == "true"
        await pool.close()

    asyncio.run(main())


def test_store_review(database):
    # Only a run with a revision can be approved.
    psql(database, "-c", "UPDATE run SET revision = 'git-v1:aaa' WHERE id = 'a5'")

    async def main():
        pool = await jr.connect(database)
        app = await jr.create_app(None, None, pool)
        try:
            await jr.store_review(pool, None, app.internal_url, "a1", "approved", "fine", "bob",
                                  False)
            await jr.store_review(pool, None, app.internal_url, "a1", "abstained", "hmm", "bob",
                                  True)
            # reschedule: stored as rejected, the candidate queued again at once.
            await jr.store_review(pool, None, app.internal_url, "a5", "reschedule", None, "eve",
                                  False)
            # A QA reviewer's verdict becomes the publish status, through the runner.
            await jr.store_review(pool, None, app.internal_url + "/", "a5", "approved", "ok",
                                  "qa", True)
            with pytest.raises(ValueError, match="verdict"):
                await jr.store_review(pool, None, app.internal_url, "a1", "maybe", None, "bob",
                                      False)
            with pytest.raises(KeyError):
                await jr.store_review(pool, None, app.internal_url, "nope", "reschedule", None,
                                      "bob", False)
            # A runner that cannot be reached: nothing is stored.
            with pytest.raises(RuntimeError, match="publish status"):
                await jr.store_review(pool, None, "http://127.0.0.1:9", "a2", "rejected", None,
                                      "qa", True)
        finally:
            await app.stop()
            await pool.close()

    asyncio.run(main())
    assert query(database, "SELECT run_id, reviewer, verdict, comment FROM review "
                           "ORDER BY run_id, reviewer") == [
        ["a1", "bob", "abstained", "hmm"],
        ["a5", "eve", "rejected", None],
        ["a5", "qa", "approved", "ok"],
    ]
    assert query(database, "SELECT publish_status FROM run WHERE id IN ('a1', 'a2', 'a5') "
                           "ORDER BY id") == [["unknown"], ["unknown"], ["approved"]]
    assert query(database, "SELECT bucket, refresh, requester FROM queue "
                           "WHERE codebase = 'alpha' AND suite = 'lintian-fixes'") == [
        ["default", "t", "reviewer (eve)"]]


def test_next_queue_item_reads_the_connection_it_is_given(database):
    url = redis_url()

    async def main():
        pool = await jr.connect(database)
        # A processor on Redis alone reads the queue from the connection it is given.
        qp = jr.QueueProcessor(None, url, redis_prefix=f"jrpy-{uuid.uuid4().hex}:")
        item, vcs = await qp.next_queue_item(pool)
        assert item is not None and item.id == 41, item
        with pytest.raises(RuntimeError, match="without a database"):
            await qp.next_queue_item()
        await pool.close()

    asyncio.run(main())
