"""Inspection settings and glimpse's rules over the detector's findings."""

from __future__ import annotations

import pytest
from oslo_utils.imageutils import format_inspector

from glimpse import settings
from glimpse.errors import Invalid
from glimpse.inspection.oslo import FORMATS
from glimpse.streams.inspection import Detection, Finding, judge


def test_inspectable_formats_are_the_inspectors() -> None:
    assert set(settings.INSPECTABLE_DISK_FORMATS) == set(format_inspector.ALL_FORMATS)
    assert set(FORMATS) == set(format_inspector.ALL_FORMATS) - {"raw"}
    assert set(settings.DEFAULT_INSPECTION_DISK_FORMATS) <= set(settings.DEFAULT_DISK_FORMATS)


def test_inspection_settings_are_read_and_checked() -> None:
    loaded = settings.load(environ={"GLIMPSE_INSPECTION_DISK_FORMATS": "raw, qcow2",
                                    "GLIMPSE_INSPECTION_STRICT_RAW": "off"})
    assert loaded.inspection_disk_formats == ("raw", "qcow2")
    assert loaded.inspection_strict_raw is False
    assert settings.from_json(settings.to_json(loaded)) == loaded
    with pytest.raises(Invalid, match="no inspector for ploop"):
        settings.load(environ={"GLIMPSE_INSPECTION_DISK_FORMATS": "raw,ploop"})


QCOW2 = Finding("qcow2", 1 << 30)


@pytest.mark.parametrize(
    ("detection", "declared", "strict", "result"),
    [
        (Detection(()), "raw", True, None),
        (Detection((QCOW2,)), "qcow2", True, QCOW2),
        (Detection((QCOW2,)), "raw", False, QCOW2),
        (Detection((Finding("gpt", 0, ("mbr: no partitions",)),)), "raw", True,
         Finding("gpt", 0, ("mbr: no partitions",))),
        (Detection((Finding("iso", 5), Finding("gpt", 0))), "iso", True, Finding("iso", 5)),
    ],
)
def test_accepted(detection: Detection, declared: str, strict: bool,
                  result: Finding | None) -> None:
    assert judge(detection, declared, match_declared=True, strict_raw=strict) == result


@pytest.mark.parametrize(
    ("detection", "declared", "match_declared", "message"),
    [
        (Detection((QCOW2,)), "raw", True, "Image content is qcow2, but disk_format is raw"),
        (Detection((QCOW2, Finding("iso", 5))), "iso", True, "more than one disk format"),
        (Detection((Finding("qcow2", 1, ("backing_file: x",)),)), "qcow2", False,
         "fails its safety checks: backing_file: x"),
        (Detection((), {"vmdk": "no KDMV"}), "vmdk", True, "not a valid vmdk image: no KDMV"),
        (Detection((QCOW2,), {"vmdk": "no KDMV"}), "vmdk", True,
         "does not match disk_format vmdk: it is qcow2"),
    ],
)
def test_refused(detection: Detection, declared: str, match_declared: bool,
                 message: str) -> None:
    with pytest.raises(Invalid, match=message):
        judge(detection, declared, match_declared=match_declared, strict_raw=True)
