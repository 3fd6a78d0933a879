"""A GraphQL websocket client on a real socket, for both subprotocols, against a running
stack: every frame is read by a task, stamped with its arrival time and filed by operation
id, so a test can wait for one operation's next frame with a bound."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.stacks import Stack

WAIT = 15.0  # seconds for any one expected message
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


@dataclass(frozen=True)
class Frame:
    at: float  # time.perf_counter() when the frame was read off the socket
    message: dict[str, Any]


_CLOSED = Frame(at=0.0, message={"type": "__closed__"})


class WsClient:
    """Reads every frame in a task and files it by operation id, stamped with its arrival
    time. Answers graphql-transport-ws pings; drops graphql-ws keep-alives ("ka")."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.closed = False
        self._queues: defaultdict[str | None, asyncio.Queue[Frame]] = defaultdict(asyncio.Queue)
        self._reader = asyncio.create_task(self._read(), name=f"ws-reader-{protocol}")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                at = time.perf_counter()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif kind not in ("pong", "ka"):
                    self._queues[message.get("id")].put_nowait(Frame(at, message))
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            for queue in self._queues.values():
                queue.put_nowait(_CLOSED)

    @property
    def close_description(self) -> str:
        return f"closed with {self.ws.close_code} {self.ws.close_reason!r}"

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def frame(self, op: str | None, timeout: float = WAIT) -> Frame:
        """The next frame of an operation (None: connection-level frames)."""
        queue = self._queues[op]
        if queue.empty() and self.closed:
            raise AssertionError(f"connection {self.close_description} while waiting for {op!r}")
        try:
            frame = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"nothing for operation {op!r} within {timeout:.1f}s") from None
        if frame is _CLOSED:
            queue.put_nowait(_CLOSED)
            raise AssertionError(f"connection {self.close_description} while waiting for {op!r}")
        return frame

    def pending(self, op: str | None) -> list[dict[str, Any]]:
        """Frames already received and not yet read (without waiting)."""
        queue = self._queues[op]
        frames = []
        while not queue.empty():
            frames.append(queue.get_nowait())
        return [f.message for f in frames if f is not _CLOSED]

    def ops_with_frames(self) -> dict[str | None, list[dict[str, Any]]]:
        return {op: msgs for op in list(self._queues) if (msgs := self.pending(op))}

    async def init(self, payload: dict[str, Any] | None) -> None:
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        ack = await self.frame(None)
        assert ack.message["type"] == "connection_ack", ack.message

    async def subscribe(self, op: str, query: str, variables: dict[str, Any]) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send({"id": op, "type": kind, "payload": {"query": query, "variables": variables}})

    async def data(self, op: str, timeout: float = WAIT) -> tuple[float, dict[str, Any]]:
        """The next result's data (`next` or `data` frame); anything else fails the test."""
        frame = await self.frame(op, timeout)
        message = frame.message
        result_type = "next" if self.protocol == TRANSPORT_WS else "data"
        assert message["type"] == result_type, f"expected {result_type} on {op!r}, got {message}"
        assert not message["payload"].get("errors"), message
        return frame.at, message["payload"]["data"]

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.wait([self._reader])
        await self.ws.close()


@asynccontextmanager
async def ws_client(stack: Stack, token: str | None, *, protocol: str = TRANSPORT_WS) -> AsyncIterator[WsClient]:
    """Connected, initialised with `{"authorization": "Bearer <token>"}` and acknowledged."""
    async with connect(stack.ws_url, subprotocols=[protocol], open_timeout=WAIT, close_timeout=2, proxy=None) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == protocol
        client = WsClient(ws, protocol)
        try:
            await client.init({"authorization": f"Bearer {token}"} if token else {})
            yield client
        finally:
            await client.close()


def frame_error_codes(message: dict[str, Any]) -> list[str | None]:
    """Codes of an `error` frame (a list on graphql-transport-ws, one error on graphql-ws) or of
    a result frame carrying errors."""
    payload = message.get("payload")
    if message["type"] == "error":
        errors = payload if isinstance(payload, list) else [payload]
    else:
        errors = (payload or {}).get("errors") or []
    return [(error.get("extensions") or {}).get("code") for error in errors]
