"""A Python runner after swapping every piece for janitor_runner's, each with the one-line
change docs/migrating-from-python.md gives (the ``# was:`` comment is the Python line it
replaces). ``mypy --strict`` checks it against the stubs (test_stubs.py); the calls are the
ones the upstream tests make (scripts/upstream-parity runs those for real)."""

from datetime import datetime, timedelta

import janitor_runner
from janitor_runner import (
    ActiveRun,
    Backchannel,
    CandidateUnavailable,
    JanitorResult,
    JenkinsBackchannel,
    PingFailure,
    PollingBackchannel,
    Queue,
    QueueEmpty,
    QueueItemAlreadyClaimed,
    QueueProcessor,
    QueueRateLimiting,
    ResumeInfo,
    RunExists,
    RunnerError,
    VcsInfo,
    WorkerResult,
    bulk_schedule,
    calculate_offset,
    committer_env,
    create_app,
    do_schedule,
    do_schedule_control,
    do_schedule_regular,
    dpkg_vendor,
    estimate_duration,
    estimate_success_probability_and_duration,
    is_log_filename,
    store_change_set,
    store_review,
    store_run,
)


async def runner(dsn: str, redis_url: str, config_path: str, runner_url: str) -> None:
    # was: db = await janitor.state.create_pool(dsn)
    db = await janitor_runner.connect(dsn)
    # was: QueueProcessor(db, redis, run_timeout=30, logfile_manager=get_log_manager(loc),
    #                     public_vcs_managers=get_vcs_managers(vcs), avoid_hosts=hosts)
    qp = QueueProcessor(db, redis_url, run_timeout=30, logfile_manager="/srv/logs",
                        public_vcs_managers="https://janitor.example/", avoid_hosts={"x.org"})
    # was: QueueProcessor(None, FakeRedis(), run_timeout=30, logfile_manager=manager)
    registry = QueueProcessor(None, redis_url, run_timeout=30)
    # was: app = await create_app(qp, config, db, tracer)  (then web.run_app / a test client)
    app = await create_app(qp, config_path, db, None)
    print(app.internal_url)

    # Models, unchanged.
    run = ActiveRun(
        campaign="lintian-fixes", codebase="foo", change_set=None, command="true",
        queue_id=1, log_id="run-1", start_time=datetime.utcnow(), vcs_info={},
        backchannel=Backchannel(), worker_name="w", instigated_context=None,
        estimated_duration=timedelta(seconds=10))
    run = ActiveRun.from_json(run.json())
    polling = PollingBackchannel("http://worker:8080/")
    jenkins = JenkinsBackchannel("https://jenkins/job/1/")
    run.backchannel = polling
    print(jenkins.json(), VcsInfo.from_json({"vcs_type": "git"}).json())
    worker_result = WorkerResult.from_json({"code": "success"})
    print(worker_result.code, ResumeInfo.from_json({"run_id": "r", "branch_url": "u",
                                                    "branches": []}).json())
    result = JanitorResult.from_worker_result(run, worker_result, [])
    print(result.json(), committer_env("A <a@b>"), is_log_filename("x.log"), dpkg_vendor())

    # The registry (Redis alone works too).
    await registry.register_run(run)
    assert await registry.get_run("run-1") is not None
    await registry.unclaim_run("run-1")
    await qp.rate_limited("github.com", datetime.utcnow() + timedelta(seconds=30))
    print([host async for host in qp.rate_limited_hosts()], await qp.status_json(),
          await qp.active_run_count(), await qp.estimate_wait("foo", "lintian-fixes"))
    qp.start_watchdog()
    try:
        await qp.finish_run(run, result)
    except RunExists:
        pass
    await qp.stop()

    # was: Queue(conn)
    queue = Queue(db)
    print(await queue.add(codebase="foo", campaign="bar", command="true"),
          await queue.next_item(), await queue.get_buckets())
    # was: await store_change_set(conn, ...) / store_run(conn, ...)
    await store_change_set(db, "cs-1", campaign="lintian-fixes")
    await store_run(
        db, run_id="run-2", codebase="foo", campaign="lintian-fixes", vcs_type="git", subpath="",
        start_time=datetime.utcnow(), finish_time=datetime.utcnow(), command="true",
        result_code="success", codemod_result={}, main_branch_revision=b"a", revision=b"b",
        description="did it", context=None, instigated_context=None, logfilenames=[],
        value=1, change_set="cs-1", worker_name=None, branch_url="https://x/foo")
    # was: await store_review(conn, session, runner_url, ...)
    await store_review(db, None, runner_url, "run-2", "approved", None, "bob", True)

    # Scheduling: the pool where the Python takes a connection.
    try:
        print(await do_schedule_regular(db, codebase="foo", campaign="lintian-fixes"),
              await do_schedule(db, "lintian-fixes", "foo", "manual", refresh=True),
              await do_schedule_control(db, "foo", main_branch_revision=b"rev"),
              await estimate_duration(db, "foo", "lintian-fixes"),
              await estimate_success_probability_and_duration(db, "foo", "lintian-fixes"))
    except CandidateUnavailable:
        pass
    rows = await bulk_schedule(db, campaign="lintian-fixes", dry_run=True)
    print(rows, calculate_offset(
        estimated_duration=timedelta(seconds=15), normalized_codebase_value=None,
        estimated_probability_of_success=0.5, candidate_value=None, total_previous_runs=0,
        success_chance=None))

    # One base class for every runner failure.
    failures: tuple[type[RunnerError], ...] = (
        QueueItemAlreadyClaimed, QueueEmpty, QueueRateLimiting, PingFailure)
    print(failures)
    await app.stop()
    await db.close()
