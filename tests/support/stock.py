"""Stock JavaScript clients (client_examples/stock, pinned in its lock file) run by the tests:
installed once per module, their JSON lines read as they come."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.support.processes import ROOT

STOCK = ROOT / "client_examples" / "stock"
WAIT = 30.0


@pytest.fixture(scope="module")
def stock_clients() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "node and npm are needed for the stock client tests (make test installs them)", pytrace=False
        )
    if not (STOCK / "node_modules" / "@apollo" / "client").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=STOCK, check=True, capture_output=True, timeout=300
        )
    return node


class StockClient:
    """A Node client process; its JSON lines, read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line.startswith("{"):
                await self.lines.put(orjson.loads(line))

    async def until(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.lines.get()
                self.seen.append(line)
                if predicate(line):
                    return line

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
