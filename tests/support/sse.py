"""A Server-Sent Events client over httpx streaming, parsing the wire format as a browser's
EventSource does (id, event, data lines; comment lines start with a colon)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    event: str  # "message" when the server names none; "comment" for a comment line
    id: str | None
    data: Any  # the JSON of the data lines (the text, for comments)


class SseStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.last_event_id: str | None = None

    async def next(self, timeout: float = 10.0) -> SseEvent:
        """The next event or comment, within `timeout` seconds."""
        return await asyncio.wait_for(self._next(), timeout)

    async def until(self, predicate: Any, timeout: float = 15.0) -> SseEvent:
        """Read until an event matches; the others are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._next()
                if predicate(event):
                    return event

    async def _next(self) -> SseEvent:
        name, event_id, data = "message", None, []
        async for line in self._lines:
            if line == "":
                if data:
                    if event_id is not None:
                        self.last_event_id = event_id
                    return SseEvent(name, event_id, json.loads("\n".join(data)))
                name, event_id, data = "message", None, []
                continue
            if line.startswith(":"):
                return SseEvent("comment", None, line[1:].strip())
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "id":
                event_id = value
            elif key == "data":
                data.append(value)
        raise EOFError("the stream ended")


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[SseStream]:
    async with client.stream("GET", url, params=params, headers={"Accept": "text/event-stream", **(headers or {})}) as response:
        yield SseStream(response)
