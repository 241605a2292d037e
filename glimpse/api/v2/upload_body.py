"""What v2's data uploads (``PUT .../file``, ``PUT .../stage``) share about their bodies: the
size a client declares in ``x-openstack-image-size``, and holding the body to it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from glimpse.errors import Invalid


def declared_size(text: str | None) -> int | None:
    """``x-openstack-image-size``: the size the client declares (None: not given)."""
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise Invalid("x-openstack-image-size must be a non-negative integer.")
    text = text.lstrip("0") or "0"
    # Past 20 digits the value only matters as "over every cap", and int() refuses past 4300.
    return int(text) if len(text) <= 20 else 10 ** 20


def exactly(chunks: Iterable[bytes], declared: int) -> Iterator[bytes]:
    """The chunks, failing the upload (so nothing is kept) unless they add up to exactly the
    size the client declared in x-openstack-image-size."""
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > declared:
            raise Invalid(f"The image data is larger than the declared size {declared} "
                          "(x-openstack-image-size).")
        yield chunk
    if received != declared:
        raise Invalid(f"The image data ({received} bytes) does not match the declared size "
                      f"{declared} (x-openstack-image-size).")
