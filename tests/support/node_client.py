"""The graphql-ws reference client (npm `graphql-ws`, the protocol's own implementation) run
under Node from tests/support/node/client.mjs: the server checked against the protocol's
reference implementation rather than against our own reading of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from tests.support.websockets import WAIT

NODE_DIR = Path(__file__).resolve().parent / "node"


class NodeClient:
    """client.mjs in a subprocess; its JSON lines in a queue."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.stderr = b""

    async def __aenter__(self) -> NodeClient:  # noqa: PYI034
        self.process = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "client.mjs"), *self.args, cwd=NODE_DIR,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process and self.process.stdout
        async for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put_nowait(json.loads(line))

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.lines.get(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"node client said nothing for {timeout:.1f}s{self._status()}"
            ) from None

    def _status(self) -> str:
        if self.process and self.process.returncode is not None:
            return f" and exited with {self.process.returncode}"
        return ""

    async def __aexit__(self, *exc: object) -> None:
        assert self.process
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.process.stderr:
            self.stderr = await self.process.stderr.read()
        if self._reader:
            await asyncio.wait([self._reader], timeout=5)
        if self.stderr.strip():
            print(f"\n[node stderr]\n{self.stderr.decode(errors='replace')[-3000:]}")
