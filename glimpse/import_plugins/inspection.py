"""An imported file's format, judged by the upload path's rules before anything opens it.

The same detector (oslo.utils' format inspector, glimpse.inspection.oslo) and the same rules
(glimpse.streams.inspection.judge) as an upload: a claimed format the content does not have,
a backing file, a data file, a VMDK that is not monolithicSparse or streamOptimized or names
other extents, formats hidden in one another: all refused with Invalid naming the cause.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from glimpse.inspection.oslo import OsloDetector
from glimpse.streams.inspection import BARE, ISO, RAW, READ_AS_BYTES, InspectionRules, judge

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class FileFormat:
    """What a file is: a disk format (raw for content no inspector recognises or a raw disk
    with a partition table), and its virtual size (its length for raw content)."""

    format: str
    virtual_size: int


def inspect_file(path: Path, rules: InspectionRules, disk_format: str | None,
                 container_format: str | None) -> FileFormat:
    """The file's format, read once as a stream; Invalid when the upload path would refuse
    it with this disk_format and container_format."""
    detector = OsloDetector()
    size = 0
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            size += len(block)
            detector.feed(block)
    declared = str(disk_format)
    match = disk_format is not None and disk_format in rules.disk_formats and (
        container_format in (None, BARE))
    found = judge(detector.finish(), declared, match_declared=match,
                  strict_raw=rules.strict_raw,
                  relax_partition_checks=rules.relax_partition_checks)
    if found is None or found.format in READ_AS_BYTES - {ISO}:
        return FileFormat(RAW, size)
    return FileFormat(found.format, found.virtual_size or (size if found.format == ISO else 0))
