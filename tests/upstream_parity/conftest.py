"""Fixtures the upstream runner tests use, on real services: ``db`` is an asyncpg pool of a
fresh database holding the upstream schema (JR_UPSTREAM_SCHEMA) adopted by
``janitor_runner.migrate``; ``FakeRedis()`` is a client of the Redis at REDIS_URL (its database
emptied); ``aiohttp_client(app)`` is an aiohttp session on the app's URL."""

import os
import subprocess
import sys
import types
import urllib.parse
import uuid

import aiohttp
import asyncpg
import pytest
import redis
import redis.asyncio

import janitor_runner
from janitor._shapes import forget_pool, register_pool

SCHEMA = os.environ["JR_UPSTREAM_SCHEMA"]
DATABASE_URL = os.environ["DATABASE_URL"]
REDIS_URL = os.environ["REDIS_URL"]
# A Redis database of its own, emptied for every FakeRedis().
REDIS_DB = int(os.environ.get("JR_UPSTREAM_REDIS_DB", "13"))


def _redis_urls() -> tuple[str, str]:
    """The URL of REDIS_DB for janitor_runner (redis crate) and for redis-py."""
    url = urllib.parse.urlsplit(REDIS_URL)
    if url.scheme in ("redis+unix", "unix"):
        path = url.path
        return f"redis+unix://{path}?db={REDIS_DB}", f"unix://{path}?db={REDIS_DB}"
    base = f"{url.scheme}://{url.netloc}/{REDIS_DB}"
    return base, base


class _RealRedis(redis.asyncio.Redis):
    """What ``fakeredis.aioredis.FakeRedis()`` gives here: a client of a real, emptied Redis."""

    def __init__(self, *args, **kwargs):
        ours, theirs = _redis_urls()
        redis.Redis.from_url(theirs).flushdb()
        pool = redis.asyncio.ConnectionPool.from_url(theirs)
        super().__init__(connection_pool=pool)
        self.janitor_runner_url = ours


_fakeredis = types.ModuleType("fakeredis")
_fakeredis.aioredis = types.ModuleType("fakeredis.aioredis")
_fakeredis.aioredis.FakeRedis = _RealRedis
sys.modules["fakeredis"] = _fakeredis
sys.modules["fakeredis.aioredis"] = _fakeredis.aioredis


def _psql(url, *args):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, *args], check=True,
                   stdout=subprocess.DEVNULL)


def _asyncpg_parameters(url):
    """asyncpg prefers the URL's host to a ``host`` query parameter (a socket directory), which
    libpq and sqlx take: give it the parameters one by one."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    return {
        "host": query.get("host") or parts.hostname,
        "port": int(query.get("port") or parts.port or 5432),
        "user": query.get("user") or parts.username,
        "password": query.get("password") or parts.password,
        "database": parts.path.lstrip("/"),
    }


@pytest.fixture()
async def db():
    name = "jrup_" + uuid.uuid4().hex
    _psql(DATABASE_URL, "-c", f"CREATE DATABASE {name}")
    base, _, params = DATABASE_URL.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + ("?" + params if params else "")
    try:
        for part in ("state.sql", os.path.join("debian", "debian.sql")):
            _psql(url, "-f", os.path.join(SCHEMA, part))
        ours = await janitor_runner.connect(url)
        await janitor_runner.migrate(ours)
        pool = await asyncpg.create_pool(**_asyncpg_parameters(url))
        register_pool(pool, name, ours)
        try:
            yield pool
        finally:
            forget_pool(pool, name)
            await pool.close()
            await ours.close()
    finally:
        _psql(DATABASE_URL, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture()
async def con(db):
    async with db.acquire() as con:
        yield con


@pytest.fixture()
async def aiohttp_client():
    opened = []

    async def client(app):
        session = aiohttp.ClientSession(base_url=app.internal_url)
        opened.append((session, app))
        return session

    yield client
    for session, app in opened:
        await session.close()
        await app.stop()
