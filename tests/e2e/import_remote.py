"""The remote end of web-download tests: an HTTP server that serves ranges, drops
connections, redirects and trickles, on a loopback address of the test's choosing."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.http_remote import serving


class Remote:
    """What the server serves and how: ``objects`` by path; ``drops`` paths whose first
    ``drops[path]`` GETs end after half their bytes; ``redirects`` path -> Location;
    ``trickle`` paths sent a small chunk at a time, slowly. ``requests`` records
    (method, path, Range header)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.drops: dict[str, int] = {}
        self.redirects: dict[str, str] = {}
        self.trickle: set[str] = set()
        self.no_range: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()


def _handler(remote: Remote) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            wanted = self.headers.get("Range")
            with remote.lock:
                remote.requests.append((self.command, self.path, wanted))
            if self.path in remote.redirects:
                self.send_response(302)
                self.send_header("Location", remote.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = remote.objects.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
            if match and self.path not in remote.no_range:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not body:
                return
            part = data[start:]
            with remote.lock:
                drop = body and remote.drops.get(self.path, 0) > 0
                if drop:
                    remote.drops[self.path] -= 1
            if drop:
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if self.path in remote.trickle:
                for offset in range(0, len(part), 4096):
                    try:
                        self.wfile.write(part[offset:offset + 4096])
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.05)
                return
            self.wfile.write(part)

    return Handler


@contextmanager
def remote_server(host: str = "127.0.0.1") -> Iterator[tuple[Remote, str]]:
    """A Remote and its base URL (``http://host:port``)."""
    remote = Remote()
    httpd = http.server.ThreadingHTTPServer((host, 0), _handler(remote))
    httpd.daemon_threads = True
    with serving(httpd) as port:
        yield remote, f"http://{host}:{port}"
