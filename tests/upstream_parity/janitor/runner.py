"""``janitor.runner`` names, mapped onto ``janitor_runner``."""

from typing import Any

import janitor_runner

from ._shapes import to_location, to_pool, to_redis_url

ActiveRun = janitor_runner.ActiveRun
Backchannel = janitor_runner.Backchannel
committer_env = janitor_runner.committer_env
is_log_filename = janitor_runner.is_log_filename


class QueueProcessor(janitor_runner.QueueProcessor):
    """Keeps the objects it was given as ``database`` and ``redis`` (the tests read them)."""

    database: Any
    redis: Any

    def __new__(cls, database: Any, redis: Any, *args: Any, **kwargs: Any) -> "QueueProcessor":
        if args:
            kwargs["run_timeout"] = args[0]
        if len(args) > 1:
            kwargs["logfile_manager"] = args[1]
        if "logfile_manager" in kwargs:
            kwargs["logfile_manager"] = to_location(kwargs["logfile_manager"])
        self = super().__new__(cls, to_pool(database), to_redis_url(redis), **kwargs)
        self.database = database
        self.redis = redis
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


async def create_app(queue_processor: Any, config: Any, db: Any, tracer: Any = None) -> Any:
    return await janitor_runner.create_app(queue_processor, config, to_pool(db), tracer)


async def store_change_set(conn: Any, name: str, **kwargs: Any) -> None:
    await janitor_runner.store_change_set(to_pool(conn), name, **kwargs)


async def store_run(conn: Any, **kwargs: Any) -> None:
    await janitor_runner.store_run(to_pool(conn), **kwargs)
