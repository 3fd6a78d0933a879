"""Real local receivers for notifications: an HTTP server (uvicorn) that answers as told
(500, too slow, fine) and keeps what it received, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Answers every POST with `status` after `delay` seconds; `start`/`stop` bring it up and
    down on the same port (down: connections are refused)."""

    port: int = field(default_factory=free_port)
    certificate: tuple[str, str] | None = None  # (certificate, key) files: serve https
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[Any] | None = None

    @property
    def url(self) -> str:
        if self.certificate is not None:
            return f"https://localhost:{self.port}/hooks/pulsegraph"
        return f"http://127.0.0.1:{self.port}/hooks/pulsegraph"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(scope["path"], headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = b"accepted" if self.status < 300 else b"receiver trouble"
        await send({"type": "http.response.start", "status": self.status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": answer})

    async def start(self) -> None:
        tls = {"ssl_certfile": self.certificate[0], "ssl_keyfile": self.certificate[1]} if self.certificate else {}
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **tls)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        self._server = self._task = None


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on a local port (its own thread), keeping every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = _Mailbox()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        return self.mailbox.messages

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
