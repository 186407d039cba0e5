"""Counting event-loop turns: proof that the loop ran other tasks while Rust worked."""

import asyncio


class Ticker:
    """``async with Ticker() as ticker``: counts loop turns in ``ticker.ticks`` until exit."""

    def __init__(self):
        self.ticks = 0
        self._task = None

    async def _run(self):
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    async def __aenter__(self):
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc_info):
        self._task.cancel()
