"""Inspection settings and glimpse's rules over the detector's findings."""

from __future__ import annotations

import os

import pytest
from oslo_utils.imageutils import format_inspector

from glimpse import settings
from glimpse.errors import Invalid
from glimpse.inspection.oslo import FORMATS, SIGNATURES, OsloDetector
from glimpse.streams.inspection import Detection, Finding, InspectionRules, Inspector, judge
from tests.e2e.disk_images import MIB, gpt_disk, qcow2_header


def test_inspectable_formats_are_the_inspectors() -> None:
    assert set(settings.INSPECTABLE_DISK_FORMATS) == set(format_inspector.ALL_FORMATS)
    assert set(FORMATS) == set(format_inspector.ALL_FORMATS) - {"raw"}
    assert set(settings.DEFAULT_INSPECTION_DISK_FORMATS) <= set(settings.DEFAULT_DISK_FORMATS)


def test_inspection_settings_are_read_and_checked() -> None:
    assert settings.load(environ={}).inspection_relax_partition_checks is False
    loaded = settings.load(environ={"GLIMPSE_INSPECTION_DISK_FORMATS": "raw, qcow2",
                                    "GLIMPSE_INSPECTION_STRICT_RAW": "off",
                                    "GLIMPSE_INSPECTION_RELAX_PARTITION_CHECKS": "on"})
    assert loaded.inspection_disk_formats == ("raw", "qcow2")
    assert loaded.inspection_strict_raw is False
    assert loaded.inspection_relax_partition_checks is True
    assert settings.from_json(settings.to_json(loaded)) == loaded
    with pytest.raises(Invalid, match="Invalid boolean 'maybe'"):
        settings.load(environ={"GLIMPSE_INSPECTION_RELAX_PARTITION_CHECKS": "maybe"})
    with pytest.raises(Invalid, match="no inspector for ploop"):
        settings.load(environ={"GLIMPSE_INSPECTION_DISK_FORMATS": "raw,ploop"})


QCOW2 = Finding("qcow2", 1 << 30)
BAD_GPT = Finding("gpt", 0, ("mbr: GPT MBR defines invalid extra partitions",))


@pytest.mark.parametrize(
    ("detection", "declared", "strict", "result"),
    [
        (Detection(()), "raw", True, None),
        (Detection((QCOW2,)), "qcow2", True, QCOW2),
        (Detection((QCOW2,)), "raw", False, QCOW2),
        (Detection((Finding("gpt", 0),)), "raw", True, Finding("gpt", 0)),
        # A bootable ISO's partition table is part of the ISO, whatever it holds.
        (Detection((Finding("iso", 5), BAD_GPT)), "iso", True, Finding("iso", 5)),
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
        (Detection((BAD_GPT,)), "raw", True,
         "partition table fails its safety checks: mbr: GPT MBR defines invalid extra"),
        (Detection((BAD_GPT,)), "ami", False, "partition table fails its safety checks"),
    ],
)
def test_refused(detection: Detection, declared: str, match_declared: bool,
                 message: str) -> None:
    with pytest.raises(Invalid, match=message):
        judge(detection, declared, match_declared=match_declared, strict_raw=True)


def test_partition_checks_may_be_relaxed() -> None:
    """The operator's choice: a failed partition table check is logged, not refused."""
    assert judge(Detection((BAD_GPT,)), "raw", match_declared=True, strict_raw=True,
                 relax_partition_checks=True) == BAD_GPT
    # Only the partition table's: a hypervisor would follow a backing file all the same.
    with pytest.raises(Invalid, match="backing_file"):
        judge(Detection((Finding("qcow2", 1, ("backing_file: x",)),)), "qcow2",
              match_declared=True, strict_raw=True, relax_partition_checks=True)


# raw and qcow2 declarations are inspected; ami, vmdk, ... are not.
RULES = InspectionRules(frozenset({"raw", "qcow2"}))


def inspect(data: bytes, disk_format: str, container_format: str = "bare",
            rules: InspectionRules = RULES) -> int | None:
    """Streams ``data`` through the inspection stage with oslo.utils' inspectors, in 64 KiB
    chunks; the virtual size it records."""
    chunks = [data[i:i + (64 << 10)] for i in range(0, len(data), 64 << 10)]
    stage = Inspector(OsloDetector, rules).stage(chunks, disk_format, container_format)
    assert b"".join(stage) == data
    return stage.virtual_size


def test_gpt_disk_passes_and_hybrid_mbr_is_refused() -> None:
    """oslo.utils' mbr check over real partition tables: a GPT whose protective MBR also lists
    a partition is refused, unless the operator relaxed partition checks."""
    disk = gpt_disk(2 * MIB)
    assert inspect(disk, "raw") == len(disk)
    hybrid = gpt_disk(2 * MIB, hybrid_mbr=True)
    with pytest.raises(Invalid, match="GPT MBR defines invalid extra partitions"):
        inspect(hybrid, "raw")
    with pytest.raises(Invalid, match="GPT MBR defines invalid extra partitions"):
        inspect(hybrid, "ami", "ami")  # whatever it is declared
    relaxed = InspectionRules(frozenset({"raw"}), relax_partition_checks=True)
    assert inspect(hybrid, "raw", rules=relaxed) == len(hybrid)


QCOW2_BACKING = qcow2_header(b"/etc/host-secret").ljust(MIB, b"\0")
QCOW2_PLAIN = qcow2_header().ljust(MIB, b"\0")


@pytest.mark.parametrize(("disk_format", "container_format"),
                         [("ami", "ami"), ("aki", "aki"), ("ari", "ari"), ("ploop", "bare"),
                          ("vmdk", "bare"), ("raw", "ova"), ("vmdk", "ovf")])
def test_undeclared_image_formats_are_refused(disk_format: str, container_format: str) -> None:
    """Declared formats that are not inspected (ami, aki, ari, ploop, vmdk left out by the
    operator), and archive containers, still have their content recognised: a qcow2 is
    refused as one, and always for its backing file."""
    with pytest.raises(Invalid, match="Image content is qcow2 and fails its safety checks: "
                                      "backing_file"):
        inspect(QCOW2_BACKING, disk_format, container_format)
    with pytest.raises(Invalid, match=f"does not match disk_format {disk_format}: it is qcow2"
                       if disk_format != "raw" else "Image content is qcow2, but disk_format"):
        inspect(QCOW2_PLAIN, disk_format, container_format)


def test_uninspected_formats_keep_other_content() -> None:
    """What is not a recognised image format is stored as sent, with no virtual size (the
    declaration is not checked); a recognised format declared as itself passes too."""
    assert inspect(bytes(MIB), "aki", "aki") is None
    assert inspect(gpt_disk(2 * MIB), "ami", "ami") is None
    assert inspect(QCOW2_PLAIN, "qcow2", "ova") is None
    lax_raw = InspectionRules(frozenset(), strict_raw=False)
    assert inspect(QCOW2_PLAIN, "raw", rules=lax_raw) is None


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_without_its_signature_the_padded_pass_never_finds_the_format(name: str) -> None:
    """The padded pass skips a format of SIGNATURES whose signature a short stream lacks:
    sound while oslo.utils finds none of these streams to be that format once padded (the
    pass run anyway here), and does find the stream with the signature in place."""
    offset, signatures = SIGNATURES[name]
    for signature in signatures:
        flipped = bytes([signature[0] ^ 0xFF]) + signature[1:]
        for head in (bytes(offset), os.urandom(offset), b"x" * offset):
            for content in (flipped, b"", os.urandom(len(signature))):
                assert name not in _padded_formats(head + content, name)
        assert name in _padded_formats(bytes(offset) + signature, name, forced=False)


def _padded_formats(data: bytes, name: str, forced: bool = True) -> set[str]:
    detector = OsloDetector()
    detector.feed(data)
    if not forced:
        return {m.format for m in detector.finish().matches}
    return {m.format for m in detector._padded({name})}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_a_short_stream_with_a_signature_is_still_found(name: str) -> None:
    """A short stream with a format's signature in place is found as that format (by the
    padded pass, or at once); the same stream without it is not."""
    offset, signatures = SIGNATURES[name]
    for length in (offset + len(signatures[0]), offset + 4096):
        short = bytearray(length)
        short[offset:offset + len(signatures[0])] = signatures[0]
        assert name in _padded_formats(bytes(short), name, forced=False)
        assert name not in _padded_formats(bytes(length), name, forced=False)
