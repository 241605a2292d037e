"""A local HTTP server on a daemon thread: the remote end of tests of external sources."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serving(httpd: socketserver.BaseServer) -> Iterator[int]:
    """Serve ``httpd`` until the block ends; yields its port. It is shut down and closed
    afterwards, even when the block fails."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])  # type: ignore[index]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
