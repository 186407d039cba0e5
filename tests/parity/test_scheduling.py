"""The scheduling functions and Queue.get_position through the Python face, awaited from
asyncio on a real database: the worked example of the queue-and-scheduling.md § (single path)."""

import asyncio
from datetime import timedelta

import pytest

import janitor_runner as jr
from _database import database, psql, query  # noqa: F401  (the fixture)
from _loop import Ticker


def test_worked_example_single_path(database):
    async def main():
        pool = await jr.connect(database)
        alpha = await jr.do_schedule_regular(pool, codebase="alpha", campaign="lintian-fixes")
        assert alpha == (118587.30257142859, timedelta(seconds=60, microseconds=166667), 42, "default")
        beta, gamma = await asyncio.gather(
            jr.do_schedule_regular(pool, codebase="beta", campaign="lintian-fixes"),
            jr.do_schedule_regular(pool, codebase="gamma", campaign="lintian-fixes"),
        )
        assert beta[0] == 5666.666666666667
        assert gamma[0] == 38181.818181818184
        manual = await jr.do_schedule(
            pool, "lintian-fixes", "gamma", "manual", requester="admin")
        assert manual == (-1.0, timedelta(seconds=30), gamma[2], "manual")
        control = await jr.do_schedule_control(
            pool, "beta", main_branch_revision=b"git-v1:abc123")
        # 42-44 went to the three candidates, 45 to the manual upsert: 46 is next.
        assert control[1:] == (timedelta(seconds=150), 46, "control")
        queue = jr.Queue(pool)
        assert await queue.get_position("lintian-fixes", "gamma") == (1, timedelta(0))
        assert await queue.get_position("lintian-fixes", "delta") == (2, timedelta(seconds=30))
        assert await queue.get_position("lintian-fixes", "nowhere") == (None, None)
        with pytest.raises(jr.CandidateUnavailable):
            await jr.do_schedule_regular(pool, codebase="delta", campaign="lintian-fixes")
        # Queue.add: priority = lowest (-7) + trunc(10.7); a less urgent re-add changes nothing.
        added = await queue.add(codebase="delta", command="x", campaign="other",
                                offset=10.7, bucket="hook",
                                estimated_duration=timedelta(seconds=5))
        assert added == (47, "hook")
        assert await queue.add(codebase="delta", command="y", campaign="other") == (47, "hook")
        assert await queue.get_buckets() == [
            ("manual", 2), ("control", 1), ("hook", 1), ("default", 2)]
        await pool.close()

    asyncio.run(main())


def test_fifty_concurrent_calls(database):
    """asyncio.gather of 50 scheduling and queue calls: no deadlock, the loop keeps running."""

    async def main():
        pool = await jr.connect(database, max_connections=4)
        queue = jr.Queue(pool)
        calls = []
        for i in range(50):
            if i % 2:
                calls.append(jr.do_schedule_regular(
                    pool, codebase=["alpha", "beta", "gamma"][i % 3], campaign="lintian-fixes"))
            else:
                calls.append(queue.get_position("lintian-fixes", "delta"))
        async with Ticker() as ticker:
            results = await asyncio.wait_for(asyncio.gather(*calls), timeout=60)
        assert len(results) == 50
        assert ticker.ticks > 0, "the event loop ran other tasks while Rust worked"
        await pool.close()

    asyncio.run(main())


def test_zero_maximum_value_is_a_typed_error(database):
    from _database import psql
    psql(database, "-c", "UPDATE codebase SET value = 0")

    async def main():
        pool = await jr.connect(database)
        with pytest.raises(jr.ZeroMaximumValue):
            await jr.do_schedule_regular(pool, codebase="alpha", campaign="lintian-fixes")
        await pool.close()

    asyncio.run(main())


POLICIES = """
INSERT INTO named_publish_policy (name, per_branch_policy) VALUES
  ('propose-main', ARRAY[ROW('main', 'propose', NULL)::branch_publish_policy]),
  ('build-only', ARRAY[ROW('main', 'build-only', NULL)::branch_publish_policy]);
UPDATE candidate SET publish_policy = CASE codebase
  WHEN 'alpha' THEN 'propose-main' ELSE 'build-only' END;
"""


def test_bulk_schedule_dry_run_returns_the_rows_and_writes_nothing(database):
    psql(database, "-c", POLICIES)
    before = query(database, "SELECT id, codebase, priority FROM queue ORDER BY id")

    async def main():
        pool = await jr.connect(database)
        dry = await jr.bulk_schedule(pool, campaign="lintian-fixes", dry_run=True)
        assert query(database, "SELECT id, codebase, priority FROM queue ORDER BY id") == before
        written = await jr.bulk_schedule(pool, campaign="lintian-fixes")
        await pool.close()
        return dry, written

    dry, written = asyncio.run(main())
    assert [row["codebase"] for row in dry] == ["alpha", "beta", "gamma"]
    assert dry == written
    assert all(row["requester"] == "scheduler" and row["bucket"] == "default" for row in dry)
    assert isinstance(dry[0]["estimated_duration"], timedelta)
    stored = {codebase: int(priority) for _, codebase, priority in
              query(database, "SELECT id, codebase, priority FROM queue")}
    assert {row["codebase"]: row["priority"] for row in written}.items() <= stored.items()


def test_calculate_offset_is_the_python_function():
    # queue-and-scheduling.md § section 6, bulk path (the numbers the Python gave).
    assert jr.calculate_offset(
        estimated_duration=timedelta(microseconds=60_166_667), normalized_codebase_value=1.0,
        estimated_probability_of_success=21.0 / 31.0 * 0.1, candidate_value=410,
        total_previous_runs=3, success_chance=None) == 2892.373233449478
    assert jr.calculate_offset(
        estimated_duration=timedelta(seconds=150), normalized_codebase_value=0.25,
        estimated_probability_of_success=1.0, candidate_value=470.0,
        total_previous_runs=0, success_chance=0.5) == 1192.982456140351
    with pytest.raises(AssertionError):
        jr.calculate_offset(
            estimated_duration=timedelta(seconds=1), normalized_codebase_value=None,
            estimated_probability_of_success=1.5, candidate_value=1, total_previous_runs=1,
            success_chance=None)
    with pytest.raises(ValueError, match="whole"):
        jr.calculate_offset(
            estimated_duration=timedelta(seconds=1), normalized_codebase_value=None,
            estimated_probability_of_success=0.5, candidate_value=1.5, total_previous_runs=1,
            success_chance=None)
