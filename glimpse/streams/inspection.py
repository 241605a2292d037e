"""The inspection stage: what the bytes of an upload really are, decided as they stream.

The parsing of disk formats is not done here: a ``FormatDetector`` (oslo.utils' format
inspector, wired in by app.py) reports which formats the content matches and which of their
safety checks fail. This module holds glimpse's rules on top of those findings: what is
refused, and which virtual size is recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from glimpse.errors import Invalid

log = logging.getLogger(__name__)

RAW = "raw"
# A raw disk with a partition table: the detectors call it "gpt" (GPT or legacy MBR). It is raw
# content as far as disk_format goes. Its checks (a protective MBR that lists other partitions,
# a bad boot flag, no partition at all) are enforced as Glance does, unless the operator
# relaxes them: tables that disagree show a disk differently to different readers.
PARTITIONED_RAW = "gpt"
ISO = "iso"
# Content a hypervisor reads as plain bytes. Any other format it recognises (qcow2, vmdk, vhd,
# vhdx, vdi, qed, luks) is translated, and may name other files: such content is refused
# unless declared as what it is, whether the declared format is inspected or not.
READ_AS_BYTES = frozenset({PARTITIONED_RAW, ISO})
# Only the container "bare" holds the disk itself; ova, ovf, docker hold archives whose
# content is not the declared disk_format, so they are judged as an uninspected declaration.
BARE = "bare"
# The code of every refusal of content (v1 answers 400; v2's table answers 415, spec §2.6).
CONTENT_REFUSED = "image_content"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One format the content matches, as the detector saw it."""

    format: str
    virtual_size: int  # 0 when the detector could not tell
    problems: tuple[str, ...] = ()  # failed safety checks, each a short reason


@dataclasses.dataclass(frozen=True)
class Detection:
    """What the detector concluded once it had seen what it needed."""

    matches: tuple[Finding, ...]  # the non-raw formats matched; none means unrecognised (raw)
    # Formats whose parser gave up on this content, with its reason: content that starts like
    # one of them but is not a valid one.
    broken: dict[str, str] = dataclasses.field(default_factory=dict)


class FormatDetector(Protocol):
    """Fed an upload's chunks in order; tells which disk formats the content matches.

    It is fed every chunk, so it must cost next to nothing once it has read what it needs.
    """

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> Detection:
        """The findings, once the stream has ended."""


@dataclasses.dataclass(frozen=True)
class InspectionRules:
    """The operator's choices: which declared disk formats are checked against the content,
    whether content of a recognised non-raw format may be declared raw, and whether failed
    partition table checks are only logged."""

    disk_formats: frozenset[str]
    strict_raw: bool = True
    relax_partition_checks: bool = False


class Inspector:
    """Builds the inspection stage of an upload. Every upload has one: a declared format that
    is not inspected only loosens how the content must match it."""

    def __init__(self, detector: Callable[[], FormatDetector], rules: InspectionRules) -> None:
        self._detector = detector
        self._rules = rules

    def stage(
        self, chunks: Iterable[bytes], disk_format: str | None, container_format: str | None
    ) -> InspectionStage:
        return InspectionStage(
            chunks, self._detector(), str(disk_format),
            match_declared=disk_format in self._rules.disk_formats
            and container_format == BARE,
            strict_raw=self._rules.strict_raw,
            relax_partition_checks=self._rules.relax_partition_checks,
        )


class InspectionStage:
    """Yields the chunks on while feeding the detector, and refuses unsafe content.

    The verdict comes at the end of the stream (a VHD's footer is its last 512 bytes); a
    refusal raises ``Invalid`` inside the iteration, before the store commits anything.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        detector: FormatDetector,
        declared: str,
        *,
        match_declared: bool,
        strict_raw: bool,
        relax_partition_checks: bool,
    ) -> None:
        self._chunks = chunks
        self._detector = detector
        self._declared = declared
        self._match_declared = match_declared
        self._strict_raw = strict_raw
        self._relax_partition_checks = relax_partition_checks
        self._size = 0
        self._found: Finding | None = None

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._size += len(chunk)
            self._detector.feed(chunk)
            yield chunk
        self._found = judge(self._detector.finish(), self._declared,
                            match_declared=self._match_declared, strict_raw=self._strict_raw,
                            relax_partition_checks=self._relax_partition_checks)

    @property
    def virtual_size(self) -> int | None:
        """The virtual size to record, once the whole stream has passed; None if unknown."""
        if not self._match_declared:
            # An archive's size says nothing about the disk inside, and content whose
            # declared format is not inspected was not read as that format.
            return None
        if self._found is None or self._found.format == PARTITIONED_RAW:
            return self._size
        if self._declared == RAW:
            return self._size  # declared raw (and allowed to be): it is read as raw bytes
        return self._found.virtual_size or None


def judge(
    detection: Detection, declared: str, *, match_declared: bool, strict_raw: bool,
    relax_partition_checks: bool = False,
) -> Finding | None:
    """glimpse's rules: the format the content is (None: raw), or Invalid naming why not.

    ``match_declared``: the content must be the declared format (an inspected format in a bare
    container). Otherwise only a recognised format that is not read as bytes must be.
    """
    matches = list(detection.matches)
    names = sorted(m.format for m in matches)
    if names == [PARTITIONED_RAW, ISO]:
        # A bootable ("hybrid") ISO carries a partition table in its system area.
        matches = [m for m in matches if m.format == ISO]
    elif len(matches) > 1:
        raise Invalid(
            f"Image content matches more than one disk format ({', '.join(names)}): "
            "one may be hidden inside another, so it is refused.", code=CONTENT_REFUSED
        )
    found = matches[0] if matches else None
    if found is not None and found.problems:
        problems = "; ".join(found.problems)
        if found.format != PARTITIONED_RAW:
            raise Invalid(f"Image content is {found.format} and fails its safety checks: "
                          f"{problems}.", code=CONTENT_REFUSED)
        if not relax_partition_checks:
            raise Invalid(f"Image content is a raw disk whose partition table fails its "
                          f"safety checks: {problems}.", code=CONTENT_REFUSED)
        log.info("partition table checks failed (relaxed by the operator): %s", problems)
    if not match_declared and (found is None or found.format in READ_AS_BYTES):
        return found
    detected = RAW if found is None or found.format == PARTITIONED_RAW else found.format
    if detected == declared:
        return found
    if declared == RAW:
        if strict_raw:
            raise Invalid(f"Image content is {detected}, but disk_format is raw: declare "
                          f"disk_format {detected} instead.", code=CONTENT_REFUSED)
        return found
    if detected == RAW and declared in detection.broken:
        raise Invalid(f"Image content is not a valid {declared} image: "
                      f"{detection.broken[declared]}.", code=CONTENT_REFUSED)
    raise Invalid(f"Image content does not match disk_format {declared}: it is {detected}.",
                  code=CONTENT_REFUSED)
