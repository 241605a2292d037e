"""The format detector over oslo.utils' format inspector.

oslo.utils ships one streaming inspector per disk format; its ``InspectWrapper`` hands every
chunk of the stream to all of them until the end. This detector drives the same inspectors
itself and stops feeding each one as soon as it has what it needs: most read only a header in
the first block, and only an inspector that captures the end of the stream (a streamOptimized
VMDK's footer) is fed on. Past that, a chunk costs keeping its last 512 bytes.
"""

from __future__ import annotations

from oslo_utils.imageutils import format_inspector as fi

from glimpse.streams.inspection import Detection, Finding

RAW = "raw"
VHD = "vhd"
# Every format oslo.utils can recognise; raw is what none of them matches.
FORMATS = tuple(name for name in fi.ALL_FORMATS if name != RAW)
# A fixed VHD has its footer only at the end: the last 512 bytes, which oslo.utils' VHD
# inspector (it reads the copy a dynamic VHD has at the start) is shown as a stream of its own.
VHD_FOOTER = 512
# An image this short that ends inside a format's structures is inspected once more as a
# hypervisor reads it: padded with zeros (reads past the end of a file return zeros). 4 MiB
# covers the fixed structures the inspectors read (VHDX's lie furthest, within the first MiBs).
PADDED_LENGTH = 4 << 20
_PAD_BLOCK = 1 << 20
_ZEROS = bytes(_PAD_BLOCK)  # one block of padding, shared: feeding never changes it
# Formats oslo.utils matches by a signature at a fixed offset alone (their format_match reads
# nothing else): the offset and the signatures. The padded pass cannot make a stream one of
# these unless its bytes there, zeros past its end, hold a signature, so it skips them
# otherwise. Every short upload used to pad for VHDX, whose structures lie past 192 KiB:
# about a quarter of a 64 KiB upload's inspection. (tests/unit/test_inspection_rules.py holds
# this table to oslo.utils' inspectors.)
SIGNATURES: dict[str, tuple[int, tuple[bytes, ...]]] = {
    "vhdx": (0, (b"vhdxfile",)),
    "iso": (32 * 1024 + 1, (b"CD001", b"NSR02", b"NSR03")),
}


class OsloDetector:
    """One run of oslo.utils' inspectors over one stream (see streams.inspection)."""

    def __init__(self, *, with_footer: bool = True, formats: tuple[str, ...] = FORMATS) -> None:
        self._inspectors = [fi.ALL_FORMATS[name]() for name in formats]
        self._feeding = list(self._inspectors)
        self._broken: dict[str, str] = {}
        self._size = 0
        self._head: list[bytes] | None = []  # the stream while it is short enough to re-read
        self._tail = b""
        self._with_footer = with_footer

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._head is not None:
            self._head.append(chunk)
            if self._size > PADDED_LENGTH:
                self._head = None
        self._tail = (self._tail + chunk if len(chunk) < VHD_FOOTER else chunk)[-VHD_FOOTER:]
        if not self._feeding:
            return
        for inspector in self._feeding:
            try:
                inspector.eat_chunk(chunk)
            except Exception as exc:  # its parser gave up on this content: not this format
                self._broken[inspector.NAME] = str(exc) or type(exc).__name__
        self._feeding = [i for i in self._feeding if i.NAME not in self._broken and _hungry(i)]

    def finish(self) -> Detection:
        live = [i for i in self._inspectors if i.NAME not in self._broken]
        for inspector in live:
            inspector.finish()
        matches = [_finding(i) for i in live if _matches(i)]
        if self._with_footer and not any(m.format == VHD for m in matches):
            matches += self._fixed_vhd()
        truncated = {i.NAME for i in live if not i.complete and not _matches(i)}
        if truncated and self._head is not None:
            truncated = {name for name in truncated if self._may_pad_to(name)}
            if truncated:
                matches += self._padded(truncated)
        return Detection(tuple(matches), dict(self._broken))

    def _fixed_vhd(self) -> list[Finding]:
        footer = fi.VHDInspector()
        footer.eat_chunk(self._tail)
        footer.finish()
        return [_finding(footer)] if len(self._tail) == VHD_FOOTER and _matches(footer) else []

    def _may_pad_to(self, name: str) -> bool:
        """Whether the zero-padded stream may still be ``name`` (see SIGNATURES)."""
        found = SIGNATURES.get(name)
        if found is None:
            return True
        offset, signatures = found
        end = offset + max(len(s) for s in signatures)
        parts, size = [], 0
        for chunk in self._head or ():
            parts.append(chunk[:end - size])
            size += len(parts[-1])
            if size >= end:
                break
        window = b"".join(parts).ljust(end, b"\0")[offset:]
        return any(window.startswith(s) for s in signatures)

    def _padded(self, truncated: set[str]) -> list[Finding]:
        """Formats the short stream turns out to be once padded with zeros: it ends inside
        their structures, which a hypervisor would still open."""
        # Only the truncated formats' inspectors: the others' findings are not asked for, and
        # one that stays hungry (a VMDK capturing the stream's end) would have every short
        # upload padded to the full length. (Measured: the padded pass of all formats was
        # about a fifth of the CPU of a 64 KiB upload, copying and zeroing 4 MiB.)
        again = OsloDetector(with_footer=False, formats=tuple(sorted(truncated)))
        again._head = None
        for chunk in self._head or ():
            again.feed(chunk)
        remaining = PADDED_LENGTH - self._size
        while remaining > 0 and again._feeding:
            again.feed(_ZEROS if remaining >= _PAD_BLOCK else bytes(remaining))
            remaining -= _PAD_BLOCK
        return [
            Finding(m.format, m.virtual_size,
                    (*m.problems, f"the image ends inside its {m.format} structures"))
            for m in again.finish().matches if m.format in truncated
        ]


def _hungry(inspector: fi.FileInspector) -> bool:
    """Whether the inspector still needs data: incomplete, or capturing the stream's end."""
    return not inspector.complete or any(
        isinstance(inspector.region(name), fi.EndCaptureRegion)
        for name in inspector.context_info
    )


def _matches(inspector: fi.FileInspector) -> bool:
    try:
        return bool(inspector.format_match)
    except Exception:  # half-parsed content (e.g. a VMDK without a descriptor): no match
        return False


def _finding(inspector: fi.FileInspector) -> Finding:
    problems: list[str] = []
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as exc:
        problems += [f"{name}: {reason}" for name, reason in exc.failures.items()]
    except fi.ImageFormatError as exc:
        problems.append(str(exc))
    if isinstance(inspector, fi.VMDKInspector) and "parentfilenamehint" in (
        inspector.desc_text or ""
    ):
        # oslo.utils accepts it as a plain header field, but it names a parent disk on the
        # host that a hypervisor may try to open.
        problems.append("descriptor: parentFileNameHint names a parent disk")
    try:
        virtual_size = max(int(inspector.virtual_size), 0)
    except Exception:  # a size field it could not read: unknown
        virtual_size = 0
    return Finding(inspector.NAME, virtual_size, tuple(problems))
