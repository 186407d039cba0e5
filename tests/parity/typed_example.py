"""A small program against the stubs: `mypy --strict` must accept it (tests/parity/test_stubs.py)."""

import asyncio
from datetime import timedelta

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


if __name__ == "__main__":
    print(asyncio.run(schedule("postgresql:///janitor")))
