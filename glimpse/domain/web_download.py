"""web-download's transfer: the remote's bytes, resumed with a Range request when the remote
drops the connection, a bounded number of times.

Every request (the first, each resumption, and every redirect of each) goes through the
ExternalSource, which checks the address it actually connects to against the network rules
(glimpse/stores/http.py): a resumption cannot reach a place the first request could not. The
whole image is verified at the end by the import (size, hashes, inspection run over the joined
stream), and the length the remote announced is held to here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from glimpse.domain.ports import ExternalSource
from glimpse.errors import GlimpseError, Invalid, Unavailable

log = logging.getLogger(__name__)

# The code of an ExternalSource's refusal of an address the network rules forbid (an Invalid):
# a web-download to such a URL is refused when asked for, not accepted and failed later.
NOT_ALLOWED = "external_not_allowed"


def announced_size(source: ExternalSource, url: str) -> int | None:
    """The size the remote announces (HEAD), None when it does not say or will not answer a
    HEAD; a refusal by the network rules propagates (Invalid, code NOT_ALLOWED)."""
    try:
        return source.size(url)
    except GlimpseError as exc:
        if exc.code == NOT_ALLOWED:
            raise
        return None


def resumable(source: ExternalSource, url: str, retries: int,
              method: str = "web-download") -> Iterator[bytes]:
    """The bytes at ``url``. When reading fails midway (Unavailable: the connection dropped,
    the body ended short), ask again from the first byte not yet received, at most
    ``retries`` times in all; a remote that does not honour the range is an error then (the
    source refuses a 200 with the whole object). A remote that announced its size must deliver
    exactly that many bytes. ``method``: the import's, as its messages name it."""
    announced = announced_size(source, url)
    received = 0
    attempts = 0
    while True:
        try:
            if announced is not None and received >= announced and received:
                break
            chunks = source.open(url, received) if received else source.open(url)
            for chunk in chunks:
                received += len(chunk)
                if announced is not None and received > announced:
                    raise Invalid(f"The remote sent more than the {announced} bytes it "
                                  "announced.")
                yield chunk
            break
        except Unavailable as exc:
            attempts += 1
            if attempts > retries:
                raise Unavailable(f"{method} of the image failed after {attempts} "
                                  f"attempts: {exc.message}") from exc
            log.warning("%s: transfer cut after %d bytes (%s); resuming (%d of %d)",
                        method, received, exc.message, attempts, retries)
            # A remote that is restarting gets a moment; bounded, as the attempts are.
            time.sleep(min(0.25 * 2 ** (attempts - 1), 4.0))
    if announced is not None and received != announced:
        raise Invalid(f"The remote announced {announced} bytes and sent {received}.")
