"""Turns the objects the upstream tests hold into what identifies them for ``janitor_runner``."""

import os
import tempfile
from typing import Any

import janitor_runner

# asyncpg pool (by id) or database name -> the janitor_runner.Pool of that database.
_POOLS: dict[Any, janitor_runner.Pool] = {}


def register_pool(asyncpg_pool: Any, database: str, pool: janitor_runner.Pool) -> None:
    _POOLS[id(asyncpg_pool)] = pool
    _POOLS[database] = pool


def forget_pool(asyncpg_pool: Any, database: str) -> None:
    _POOLS.pop(id(asyncpg_pool), None)
    _POOLS.pop(database, None)


def to_pool(database: Any) -> janitor_runner.Pool | None:
    """An asyncpg pool, or a connection of one, as the janitor_runner pool of its database."""
    if database is None or isinstance(database, janitor_runner.Pool):
        return database
    if id(database) in _POOLS:
        return _POOLS[id(database)]
    # A connection (pooled or not) names its database in its connection parameters.
    return _POOLS[database._params.database]


def to_redis_url(redis: Any) -> str | None:
    """A Redis client made by this adapter's FakeRedis, as its URL."""
    return None if redis is None else redis.janitor_runner_url


def to_location(manager: Any) -> str | None:
    """A log or artifact manager object as a directory: a new temporary one."""
    if manager is None or isinstance(manager, (str, os.PathLike)):
        return manager
    return tempfile.mkdtemp(prefix="upstream-parity-logs-")
