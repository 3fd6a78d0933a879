"""A TCP hop between a client and its server that a test can cut: a real outage of any length
of a server other tests share, without stopping it."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


class Proxy:
    """A TCP hop between a bus and its server that a test can cut and restore: a real outage
    of any length without stopping a server other tests share."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or {"redis": 6379}.get(parts.scheme, 5432)
        query = parse_qs(parts.query)
        socket_dir = query.pop("host", [""])[0]  # libpq's ?host=/dir: a server on a unix socket
        self._socket = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir.startswith("/") else None
        self._target = (parts.hostname or "127.0.0.1", port)
        self._url = parts._replace(query=urlencode(query, doseq=True))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        userinfo = self._url.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(self._url._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._socket is not None:
            server_reader, server_writer = await asyncio.open_unix_connection(self._socket)
        else:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))
        self._writers -= {client_writer, server_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
