"""Queue reads, the estimates and QueueProcessor through the Python face, on the worked
example of the queue-and-scheduling.md § (section 6) in a real database; QueueProcessor with both active-run
stores (PostgreSQL, and a real Redis when REDIS_URL is set). Expected values come from the
specs: queue-and-scheduling.md §1.4-1.5, 2.4 and 6; models-backchannels-worker.md §4.3-4.6."""

import asyncio
import os
import uuid
from datetime import datetime, timedelta

import pytest

import _database
import janitor_runner as jr
from _database import database  # noqa: F401  (the fixture)
from _loop import Ticker

CAMPAIGN = "lintian-fixes"


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


async def schedule_worked_example(pool):
    """The three candidates through the single path: ids 42 (alpha), 43 (beta), 44 (gamma)."""
    for codebase in ("alpha", "beta", "gamma"):
        await jr.do_schedule_regular(pool, codebase=codebase, campaign=CAMPAIGN)


def test_queue_item_model():
    item = jr.QueueItem(id=3, context=None, command="lintian-brush",
                        estimated_duration=timedelta(seconds=1.5), campaign=CAMPAIGN,
                        refresh=None, requester="admin", change_set=None, codebase="alpha")
    assert item.refresh is False
    assert (item.id, item.codebase, item.campaign, item.command) == (
        3, "alpha", CAMPAIGN, "lintian-brush")
    same_id = jr.QueueItem(id=3, context="c", command="x", estimated_duration=None,
                           campaign="other", refresh=True, requester=None, change_set="cs",
                           codebase="beta")
    later = jr.QueueItem(id=7, context=None, command="x", estimated_duration=None,
                         campaign=CAMPAIGN, refresh=False, requester=None, change_set=None,
                         codebase="alpha")
    # Python: equal and hashed by id, ordered by id, unequal to anything else.
    assert item == same_id and hash(item) == hash(same_id)
    assert item != later and item != 3
    assert sorted([later, item]) == [item, later]
    assert len({item, same_id, later}) == 2
    js = item.json()
    assert js == {"id": 3, "context": None, "command": "lintian-brush",
                  "estimated_duration": 1.5, "campaign": CAMPAIGN, "refresh": False,
                  "requester": "admin", "change_set": None, "codebase": "alpha"}
    assert jr.QueueItem.from_json(js).json() == js
    with pytest.raises(jr.ModelError):
        jr.QueueItem.from_json({"id": "3", "command": "x", "campaign": "c", "codebase": "a"})


def test_vcs_info():
    info = jr.VcsInfo.from_json({"branch_url": "https://example.com/a.git", "vcs_type": "git",
                                 "unknown": 1})
    assert isinstance(info, dict)
    assert info == {"branch_url": "https://example.com/a.git", "vcs_type": "git"}
    assert info.json() == dict(info)
    assert jr.VcsInfo.from_json('{"subpath": ""}') == {"subpath": ""}
    with pytest.raises(jr.ModelError):
        jr.VcsInfo.from_json({"branch_url": 3})


def test_queue_reads(database):
    _database.psql(database, "-c",
                   "UPDATE codebase SET branch_url = 'https://salsa.debian.org/x/delta.git', "
                   "url = 'https://salsa.debian.org/x/delta.git', "
                   "vcs_type = 'git', subpath = '' WHERE name = 'delta'")

    async def main():
        pool = await jr.connect(database)
        await schedule_worked_example(pool)
        queue = jr.Queue(pool)
        # Run order: the manual row, then default by priority; the single path's offsets
        # (queue-and-scheduling.md §6): beta 5666, gamma 38181, alpha 118587.
        item, vcs = await queue.next_item()
        assert (item.id, item.codebase, item.estimated_duration) == (
            41, "delta", timedelta(seconds=45))
        # An empty subpath is kept (only NULL is left out), as in the Python.
        assert vcs == {"branch_url": "https://salsa.debian.org/x/delta.git", "subpath": "",
                       "vcs_type": "git"}
        item, vcs = await queue.next_item(assigned_queue_items={41})
        assert (item.id, item.codebase, vcs) == (43, "beta", {})
        item, _ = await queue.next_item(exclude_hosts={"salsa.debian.org"})
        assert item.id == 43
        item, _ = await queue.next_item(campaign=CAMPAIGN, codebase="gamma")
        assert (item.id, item.context, item.requester) == (44, None, "scheduler")
        assert await queue.next_item(codebase="nowhere") == (None, {})
        fetched = await queue.get_item(42)
        assert (fetched.codebase, fetched.context) == ("alpha", "ctx-a")
        assert fetched.estimated_duration == timedelta(seconds=60, microseconds=166667)
        assert await queue.get_item(999) is None
        assert [i.id async for i in queue.iter_queue()] == [41, 43, 44, 42]
        assert [i.id async for i in queue.iter_queue(limit=2)] == [41, 43]
        assert [i.id async for i in queue.iter_queue(campaign="other")] == []
        await pool.close()

    run(main())


def test_estimates(database):
    async def main():
        pool = await jr.connect(database)
        # Spec 6, alpha: t = 3, s = 2, same context: p = 21/31 x 0.1; D = mean of 3 runs.
        assert await jr.estimate_success_probability_and_duration(
            pool, "alpha", CAMPAIGN, "ctx-a") == (
            0.06774193548387096, timedelta(seconds=60, microseconds=166667), 3)
        # Spec 2.4: AVG over the pair's non-transient runs (a1, a2, a3, a5) ...
        assert await jr.estimate_duration(pool, "alpha", CAMPAIGN) == timedelta(
            seconds=47, microseconds=625000)
        # ... else the codebase's (beta: 100 s and 200 s), else the campaign's, else 15 s.
        assert await jr.estimate_duration(pool, "beta", CAMPAIGN) == timedelta(seconds=150)
        assert await jr.estimate_duration(pool, "delta", "fresh-releases") == timedelta(
            seconds=150)
        assert await jr.estimate_duration(pool, "delta", "nothing") == timedelta(seconds=15)
        await pool.close()

    run(main())


def processor_for(request, pool, **kwargs):
    if request.param == "redis":
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set")
        kwargs.update(redis=url, redis_prefix=f"jrpy-{uuid.uuid4().hex}:")
    return jr.QueueProcessor(pool, **kwargs)


@pytest.fixture(params=["postgres", "redis"])
def store(request):
    return request


def test_queue_processor(database, store):
    # Runs name their worker, which the run table references.
    _database.psql(database, "-c", "INSERT INTO worker (name, password) VALUES ('worker-1', 'x')")

    async def main():
        pool = await jr.connect(database)
        await schedule_worked_example(pool)
        processor = processor_for(store, pool, avoid_hosts={"avoided.example"})
        queue = jr.Queue(pool)
        assert await processor.status_json() == {
            "processing": [], "avoid_hosts": ["avoided.example"], "rate_limit_hosts": {}}
        assert await processor.active_run_count() == 0
        # Nothing runs: the per-run wait is None where the Python divides by zero.
        assert await processor.estimate_wait("beta", CAMPAIGN) == (
            2, None, timedelta(seconds=45))
        assert await processor.estimate_wait("nowhere", CAMPAIGN) == (None, None, None)

        item, vcs = await queue.next_item()
        active = jr.ActiveRun.from_queue_item(item, vcs, None, "worker-1")
        await processor.register_run(active)
        assert (await processor.get_run(active.log_id)).log_id == active.log_id
        assert await processor.get_run("unknown") is None
        assert await processor.active_run_count() == 1
        status = await processor.status_json()
        [entry] = status["processing"]
        assert (entry["id"], entry["queue_id"], entry["worker"], entry["mia"]) == (
            active.log_id, 41, "worker-1", False)
        assert entry["keepalive_age"] >= 0
        # One run active: the wait ahead of beta (45 s) over one run.
        assert await processor.estimate_wait("beta", CAMPAIGN) == (
            2, timedelta(seconds=45), timedelta(seconds=45))
        # The claimed item is skipped by the next assignment.
        nxt, _ = await processor.next_queue_item()
        assert nxt.id == 43
        rival = jr.ActiveRun.from_queue_item(item, vcs, None, "worker-2")
        with pytest.raises(jr.QueueItemAlreadyClaimed):
            await processor.register_run(rival)

        result = jr.JanitorResult.from_worker_result(
            active, jr.WorkerResult.from_json({"code": "success", "description": "done"}),
            ["worker.log"])
        await processor.finish_run(active, result)
        assert await processor.active_run_count() == 0
        assert await processor.get_run(active.log_id) is None
        assert _database.query(
            database, f"SELECT result_code, codebase, suite FROM run WHERE id = '{active.log_id}'"
        ) == [["success", "delta", CAMPAIGN]]
        assert _database.query(database, "SELECT id FROM queue WHERE id = 41") == []
        with pytest.raises(jr.RunExists):
            await processor.finish_run(active, result)

        # Abort: stored with the code, dequeued, and the candidate rescheduled
        # (models-backchannels-worker.md §4.4).
        item, vcs = await processor.next_queue_item()
        assert item.codebase == "beta"
        beta = jr.ActiveRun.from_queue_item(item, vcs, None, "worker-1")
        await processor.register_run(beta)
        await processor.abort_run(beta, "worker-timeout", "No keepalives", transient=True)
        assert _database.query(
            database,
            f"SELECT result_code, description, failure_transient FROM run WHERE id = '{beta.log_id}'"
        ) == [["worker-timeout", "No keepalives", "t"]]
        requeued = []
        for _ in range(100):
            requeued = _database.query(
                database, "SELECT requester, bucket FROM queue WHERE codebase = 'beta'")
            if requeued:
                break
            await asyncio.sleep(0.05)
        assert requeued == [["after run schedule", "default"]]

        # Rate limiting: a datetime, seconds, or the default two minutes.
        until = datetime.utcnow().replace(microsecond=0) + timedelta(hours=1)
        await processor.rate_limited("a.example", until)
        await processor.rate_limited("b.example", 600)
        await processor.rate_limited("c.example")
        hosts = {host: when async for host, when in processor.rate_limited_hosts()}
        assert hosts["a.example"] == until
        now = datetime.utcnow()
        assert timedelta(seconds=590) < hosts["b.example"] - now <= timedelta(seconds=600)
        assert timedelta(seconds=110) < hosts["c.example"] - now <= timedelta(seconds=120)
        assert set((await processor.status_json())["rate_limit_hosts"]) == set(hosts)
        with pytest.raises(TypeError):
            await processor.rate_limited("d.example", "soon")
        # A rate-limited host is skipped by the next assignment.
        _database.psql(database, "-c",
                       "UPDATE codebase SET branch_url = 'https://a.example/x.git', url = 'https://a.example/x.git' "
                       "WHERE name = 'alpha'")
        skipped, _ = await processor.next_queue_item(codebase="alpha")
        assert skipped is None
        await processor.unclaim_run("unknown")
        await pool.close()

    run(main())


def test_fifty_concurrent_awaits(database):
    """Acceptance: Queue.next_item, do_schedule_regular and QueueProcessor.register_run awaited
    together (asyncio.gather of 50) finish, and the event loop keeps running meanwhile."""

    async def main():
        pool = await jr.connect(database, max_connections=4)
        processor = jr.QueueProcessor(pool)
        queue = jr.Queue(pool)
        items = []
        for i in range(20):
            codebase = f"cb{i:02d}"
            _database.psql(database, "-c", f"INSERT INTO codebase (name) VALUES ('{codebase}')")
            queue_id, _ = await queue.add(codebase=codebase, command="c", campaign="other")
            items.append(await queue.get_item(queue_id))
        runs = [jr.ActiveRun.from_queue_item(item, {}, None, "w") for item in items]
        calls = []
        for i in range(50):
            if i % 5 < 2 and runs:
                calls.append(processor.register_run(runs.pop()))
            elif i % 5 < 4:
                calls.append(queue.next_item(assigned_queue_items=set()))
            else:
                calls.append(jr.do_schedule_regular(
                    pool, codebase=["alpha", "beta", "gamma"][i % 3], campaign=CAMPAIGN))
        async with Ticker() as ticker:
            results = await asyncio.gather(*calls)
        assert len(results) == 50
        assert await processor.active_run_count() == 20
        assert ticker.ticks > 0, "the event loop ran other tasks while Rust worked"
        await pool.close()

    run(main())
