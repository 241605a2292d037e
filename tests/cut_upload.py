"""An upload that a fault interrupts mid-stream, sent over a raw socket so that the test
decides when each byte leaves: the store suites' fault tests share it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

MiB = 1 << 20


def upload_cut_by(port: int, head: str, fault: Callable[[], None], *, before: int = 6,
                  after: int = 6, total: int = 12, timeout: float = 60) -> tuple[int, str]:
    """Send ``head`` (request line and headers, without Content-Length or the blank line)
    with a ``total`` MiB body: ``before`` MiB, a pause for them to reach the store, then
    ``fault()``, then up to ``after`` MiB more (glimpse may answer and close first); the
    answer's status and body as a client would see them, without sending the rest."""
    block = b"x" * MiB
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"{head}Content-Length: {total * MiB}\r\n\r\n".encode())
        for _ in range(before):
            sock.sendall(block)
        time.sleep(1.5)  # let the first parts, segments or objects reach the store
        fault()
        try:
            for _ in range(after):
                sock.sendall(block)
        except OSError:
            pass  # glimpse may answer and close before reading all of it
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) == 0:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status_line, _, body = answer.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), body.decode(errors="replace")
