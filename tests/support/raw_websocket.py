"""A slow websocket subscriber: graphql-transport-ws on a plain blocking socket with a tiny
receive buffer, so that when it stops reading, TCP flow control pushes back on the server
at once (a library client would keep reading into its own buffers)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
from typing import Any


class RawWebSocket:
    """A graphql-transport-ws client on a plain blocking socket with a tiny receive buffer,
    so that when it stops reading, TCP flow control pushes back on the server at once
    (a library client would keep reading into its own buffers)."""

    def __init__(
        self, port: int, path: str = "/graphql", protocol: str = "graphql-transport-ws"
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # before connect: caps the window
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, f"connection closed during the handshake: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        else:
            header.append(0x80 | 126)
            header += len(payload).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def frame(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (no fragmentation: the server sends none)."""
        self.sock.settimeout(timeout)
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(length)

    def message(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text message; a close frame becomes {"type": "__close__", "code": ...}."""
        while True:
            opcode, payload = self.frame(timeout)
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return {
                    "type": "__close__",
                    "code": code,
                    "reason": payload[2:].decode(errors="replace"),
                }
            # ping/pong frames: ignored (a real client would answer pings)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
