"""serve() and start_server(): the whole runner inside this Python process, with the binary's
options, answering over HTTP while the asyncio event loop keeps running other tasks."""

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest

import janitor_runner as jr
from _database import database  # noqa: F401  (the fixture)
from _loop import Ticker


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def options(database, *extra):
    return ["--database-url", database, "--config", "/dev/null", "--listen-address",
            "127.0.0.1", "--public-vcs-location", "https://vcs.example/", *extra]


def test_serve_answers_health_while_the_loop_runs(database, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    port = free_port()

    async def main():
        async with Ticker() as ticker:
            await serve_and_check(ticker)

    async def serve_and_check(ticker):
        serving = asyncio.ensure_future(
            jr.serve(options(database, "--port", str(port), "--public-port", "0")))
        answer = None
        for _ in range(200):
            try:
                answer = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                assert not serving.done(), serving.exception()
                await asyncio.sleep(0.05)
        assert answer == (200, "ok")
        before = ticker.ticks
        status = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/status")
        assert json.loads(status[1]) == {
            "processing": [], "avoid_hosts": [], "rate_limit_hosts": {}}
        assert ticker.ticks > before, "the event loop kept running while the runner answered"
        # Cancelling the awaiting task shuts the runner down.
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        for _ in range(100):
            try:
                await asyncio.to_thread(get, f"http://127.0.0.1:{port}/health")
            except OSError:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the runner still answers after its task was cancelled")

    asyncio.run(asyncio.wait_for(main(), timeout=120))


def test_start_server_handle(database, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)

    async def main():
        server = await jr.start_server(options(database, "--port", "0", "--public-port", "0"))
        assert server.public_url is None
        assert await asyncio.to_thread(get, server.internal_url + "/health") == (200, "ok")
        await server.stop()
        with pytest.raises(OSError):
            await asyncio.to_thread(get, server.internal_url + "/health")

    asyncio.run(asyncio.wait_for(main(), timeout=120))


def test_bad_options_are_a_value_error():
    with pytest.raises(ValueError, match="--no-such-flag"):
        jr.start_server(["--no-such-flag"])


def test_start_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)

    async def main():
        with pytest.raises(RuntimeError, match="cannot read configuration"):
            await jr.start_server(["--port", "0", "--config", str(tmp_path / "missing.conf")])

    asyncio.run(main())


def error_of(url):
    try:
        urllib.request.urlopen(url, timeout=10)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    raise AssertionError(f"{url} answered 2xx")


def test_starts_without_database_or_vcs_location(monkeypatch):
    """The probes answer at once; the rest says 503 with the reason; nothing is assigned."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"

    async def main():
        server = await jr.start_server(
            ["--database-url", unreachable, "--config", "/dev/null", "--listen-address",
             "127.0.0.1", "--port", "0", "--public-port", "0"])
        try:
            assert await asyncio.to_thread(get, server.internal_url + "/health") == (200, "ok")
            status, body = await asyncio.to_thread(error_of, server.internal_url + "/ready")
            assert status == 503 and "database" in body["reason"], body
            status, body = await asyncio.to_thread(error_of, server.internal_url + "/queue")
            assert status == 503 and body["reason"], body
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=120))
