"""A small program against the stubs: `mypy --strict` must accept it (tests/parity/test_stubs.py)."""

import asyncio
from datetime import datetime, timedelta

import janitor_runner as jr


async def schedule(dsn: str) -> tuple[int | None, timedelta | None]:
    pool: jr.Pool = await jr.connect(dsn, max_connections=2)
    offset, duration, queue_id, bucket = await jr.do_schedule_regular(
        pool, codebase="alpha", campaign="lintian-fixes", requester="example"
    )
    total: float = offset + duration.total_seconds() + queue_id
    assert bucket and total
    await jr.do_schedule(pool, "lintian-fixes", "alpha", "manual", offset=-1.0)
    await jr.do_schedule_control(pool, "alpha", main_branch_revision=b"rev")
    position = await jr.Queue(pool).get_position("lintian-fixes", "alpha")
    await pool.close()
    return position


def models(js: dict[str, object]) -> str:
    run = jr.ActiveRun.from_json(js)
    data: dict[str, object] = run.json()
    env: dict[str, str] = jr.committer_env("A <a@b>")
    try:
        jr.WorkerResult.from_json("{}")
    except jr.ModelError as error:
        return str(error) + str(data) + str(env)
    return run.log_id


async def process(dsn: str) -> int:
    pool = await jr.connect(dsn)
    queue = jr.Queue(pool)
    item, vcs = await queue.next_item(campaign="lintian-fixes", exclude_hosts={"a.example"})
    ids = [i.id async for i in queue.iter_queue(limit=10)]
    probability, duration, runs = await jr.estimate_success_probability_and_duration(
        pool, "alpha", "lintian-fixes")
    assert probability >= 0 and duration >= await jr.estimate_duration(pool, "a", "b") and runs >= 0
    processor = jr.QueueProcessor(pool, run_timeout=30, avoid_hosts={"b.example"})
    if item is not None:
        run = jr.ActiveRun.from_queue_item(item, jr.VcsInfo.from_json(vcs), None, "worker")
        try:
            await processor.register_run(run)
        except jr.QueueItemAlreadyClaimed:
            pass
        await processor.abort_run(run, "worker-timeout", "gone", transient=True)
    await processor.rate_limited("c.example", 60)
    limited = {host: until async for host, until in processor.rate_limited_hosts()}
    status: dict[str, object] = await processor.status_json()
    server = await jr.start_server(["--port", "0", "--public-vcs-location", "https://x/"])
    url: str = server.internal_url
    await server.stop()
    return len(ids) + len(limited) + len(status) + len(url) + await processor.active_run_count()


async def watch(dsn: str, worker_url: str) -> list[str]:
    channel: jr.Backchannel = jr.PollingBackchannel(worker_url)
    run = jr.ActiveRun(
        campaign="generic", codebase="alpha", change_set=None, command="true",
        instigated_context=None, estimated_duration=timedelta(seconds=5), queue_id=1,
        log_id="run-1", start_time=datetime.utcnow(), vcs_info={}, backchannel=channel,
        worker_name="worker")
    try:
        alive: bool = await run.ping()
    except jr.PingFatalFailure as fatal:
        reason: str = fatal.reason
        return [reason]
    except jr.PingFailure:
        alive = False
    log = await run.backchannel.get_log_file("worker.log")
    names = await channel.list_log_files() + [log.read().decode()]
    pool = await jr.connect(dsn)
    await jr.store_change_set(pool, "cs", "lintian-fixes")
    await jr.store_run(
        pool, run_id="r", codebase="c", vcs_type="git", branch_url=None,
        start_time=datetime(2026, 1, 1), finish_time=datetime(2026, 1, 1),
        command="x", description=None, instigated_context=None, context=None,
        main_branch_revision=b"git-v1:a", result_code="success", revision=None,
        codemod_result={}, campaign="lintian-fixes", logfilenames=[], value=None,
        result_branches=[("main", None, None, b"git-v1:b")])
    processor = jr.QueueProcessor(pool)
    processor.start_watchdog()
    if processor._watch_dog is not None and not processor._watch_dog.done():
        report = await processor.check_active_runs()
        names.append(str(report["due"]))
    processor.stop_watchdog()
    await processor.stop()
    duration: timedelta = run.current_duration
    return names + [str(alive), str(duration), run.backchannel.json().get("my_url", "")]


if __name__ == "__main__":
    print(asyncio.run(schedule("postgresql:///janitor")))
