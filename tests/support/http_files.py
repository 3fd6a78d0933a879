"""A real HTTP server on 127.0.0.1 serving files from a dict, for download tests.

Tests change `files` while it runs (a new month, a corrupt file) and read `requests` to see
what the client asked for and with which credentials. A path that is not in `files` answers
404; a value of `(status, body)` answers that status.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    base_url: str
    files: dict[str, bytes | tuple[int, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path with query, Authorization)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            server.requests.append((self.path, self.headers.get("Authorization")))
            found = server.files.get(self.path)
            status, body = (404, b"not found") if found is None else found if isinstance(found, tuple) else (200, found)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet in test output
            return

    return Handler


@contextmanager
def file_server() -> Iterator[FileServer]:
    """Serve until the block ends; the port is chosen by the OS."""
    state = FileServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="test-file-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
