"""A small corpus of disk images, benign and hostile, built at test time.

Images come from qemu-img (Debian package qemu-utils; scripts/test installs it) with tiny
virtual sizes, then small byte-level edits make the hostile ones. Each name maps to the bytes.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

MIB = 1 << 20
# Written into the host file the hostile images point at; never to be served back.
HOST_SECRET = b"glimpse-host-secret-7f3a1c"


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        pytest.skip("qemu-img is missing (Debian package qemu-utils; scripts/test installs it "
                    "when run as root)")
    return path


class Corpus:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.tool = qemu_img()
        self.host_file = workdir / "host-secret.raw"
        self.host_file.write_bytes(HOST_SECRET * 64)

    def create(self, name: str, fmt: str, *options: str, size: str = "1M") -> bytes:
        path = self.dir / name
        command = [self.tool, "create", "-q", "-f", fmt, *options, str(path), size]
        for _ in range(5):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            # LUKS times its key derivation on the CPU first, and gives up ("Unable to get
            # accurate CPU usage") when the machine is busy: seen here in a few of a dozen
            # parallel runs. Another try is all it needs.
            if done.returncode == 0 or "accurate CPU usage" not in done.stderr:
                break
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
        return path.read_bytes()

    def virtual_size(self, name: str) -> int:
        out = subprocess.run([self.tool, "info", "--output=json", str(self.dir / name)],
                             check=True, capture_output=True).stdout
        size: int = json.loads(out)["virtual-size"]
        return size

    def build(self) -> dict[str, bytes]:
        images: dict[str, bytes] = {}
        # -- benign, one per format -------------------------------------------------------
        images["raw"] = os.urandom(MIB)
        images["qcow2"] = self.create("benign.qcow2", "qcow2")
        images["vmdk"] = self.create("benign.vmdk", "vmdk")
        images["vmdk-stream"] = self.create("stream.vmdk", "vmdk",
                                            "-o", "subformat=streamOptimized")
        images["vhd"] = self.create("benign.vhd", "vpc")
        images["vhd-fixed"] = self.create("fixed.vhd", "vpc", "-o", "subformat=fixed")
        images["vhdx"] = self.create("benign.vhdx", "vhdx")
        images["vdi"] = self.create("benign.vdi", "vdi")
        images["iso"] = iso_image(MIB)
        images["iso-hybrid"] = with_mbr(iso_image(MIB))
        images["raw-mbr"] = with_mbr(bytes(MIB))
        images["raw-gpt"] = gpt_disk(2 * MIB)
        # -- formats the inspector knows but glimpse never accepts as such ------------------
        images["qed"] = self.create("benign.qed", "qed")
        images["luks"] = self.create("benign.luks", "luks", "--object", "secret,id=s0,data=pw",
                                     "-o", "key-secret=s0")
        # -- hostile ------------------------------------------------------------------------
        images["qcow2-backing"] = self.create(
            "backing.qcow2", "qcow2", "-u", "-b", str(self.host_file), "-F", "raw")
        images["qcow2-data-file"] = self.create(
            "datafile.qcow2", "qcow2", "-o", f"data_file={self.dir / 'data-file.raw'}")
        images["qcow2-unknown-feature"] = patched(images["qcow2"], 0x48 + 7, 0x80)
        images["vmdk-flat"] = self.create("flat.vmdk", "vmdk", "-o", "subformat=monolithicFlat")
        images["vmdk-extent-path"] = edit_descriptor(
            images["vmdk"], lambda text: text.replace(
                b'"benign.vmdk"', b'"' + str(self.host_file).encode() + b'"'))
        images["vmdk-parent-hint"] = edit_descriptor(
            images["vmdk"], lambda text: text.replace(
                b"createType=", b'parentFileNameHint="' + str(self.host_file).encode()
                + b'"\ncreateType='))
        images["iso-qcow2-system-area"] = images["qcow2"][:512] + iso_image(MIB)[512:]
        images["qcow2-vhd-footer"] = images["qcow2"] + images["vhd-fixed"][-512:]
        images["qcow2-truncated"] = images["qcow2"][:100]
        # A qcow2 header naming a host file as its backing file, cut short of the 512 bytes
        # an inspector reads: the classic probe-me attack.
        images["qcow2-short-backing"] = qcow2_header(str(self.host_file).encode())
        # A protective MBR that also lists a partition: refused by oslo.utils' mbr check.
        images["gpt-hybrid-mbr"] = gpt_disk(2 * MIB, hybrid_mbr=True)
        images["empty"] = b""
        images["gzip-bomb"] = gzip.compress(bytes(64 * MIB), compresslevel=9)
        return images


def qcow2_header(backing_file: bytes = b"") -> bytes:
    """A qcow2 v2 header (72 bytes), with the name of its backing file (if any) after it."""
    offset = 72 if backing_file else 0
    return struct.pack(">4sIQI", b"QFI\xfb", 2, offset, len(backing_file)) + bytes(72 - 20) \
        + backing_file


def patched(data: bytes, offset: int, bits: int) -> bytes:
    out = bytearray(data)
    out[offset] |= bits
    return bytes(out)


def edit_descriptor(vmdk: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """Rewrite the text descriptor embedded in a monolithicSparse VMDK (sector 1 on)."""
    desc_sectors = struct.unpack_from("<Q", vmdk, 36)[0]
    start, end = 512, 512 + desc_sectors * 512
    text = vmdk[start:end].split(b"\0")[0]
    new = edit(text)
    assert new != text and len(new) <= end - start
    return vmdk[:start] + new.ljust(end - start, b"\0") + vmdk[end:]


def iso_image(size: int) -> bytes:
    """An ISO 9660 image: an empty system area (16 sectors), a primary volume descriptor and
    the set terminator: what makes content an ISO to a reader."""
    blocks = size // 2048
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[40:72] = b"GLIMPSE".ljust(32)
    # Both-endian fields: little-endian then big-endian copies.
    struct.pack_into("<I", pvd, 80, blocks)
    struct.pack_into(">I", pvd, 84, blocks)
    struct.pack_into("<H", pvd, 128, 2048)
    struct.pack_into(">H", pvd, 130, 2048)
    terminator = b"\xffCD001\x01".ljust(2048, b"\0")
    data = bytes(16 * 2048) + bytes(pvd) + terminator
    return data.ljust(size, b"\0")


def with_mbr(data: bytes) -> bytes:
    """The same bytes with a one-partition MBR in the first sector, as on a bootable disk."""
    out = bytearray(data)
    entry = struct.pack("<B3BB3BII", 0x80, 0, 2, 0, 0x83, 0xFE, 0xFF, 0xFF, 1,
                        len(data) // 512 - 1)
    out[446:462] = entry
    out[510:512] = b"\x55\xaa"
    return bytes(out)


# The GPT type of a Linux filesystem partition, as partitioning tools write it.
LINUX_FILESYSTEM = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
_GPT_ENTRIES, _GPT_ENTRY_SIZE = 128, 128
# signature, revision, header size, header CRC, reserved, this LBA, backup LBA, first and last
# usable LBAs, disk GUID, entry array LBA, entry count, entry size, entry array CRC
_GPT_HEADER = "<8sIIIIQQQQ16sQIII"
_GPT_ARRAY_SECTORS = _GPT_ENTRIES * _GPT_ENTRY_SIZE // 512


def gpt_disk(size: int, *, hybrid_mbr: bool = False) -> bytes:
    """A GPT disk of ``size`` bytes with one partition from 1 MiB to the end, laid out as
    partitioning tools write it: a protective MBR (one 0xEE entry covering the disk), the
    primary header and entry array from sector 1, their backup in the last sectors.

    ``hybrid_mbr``: the MBR also lists the partition beside the protective entry (gdisk's
    "hybrid MBR"): the two tables disagree about the disk, which oslo.utils' ``mbr`` check
    refuses."""
    sectors = size // 512
    first_usable, last_usable = 2 + _GPT_ARRAY_SECTORS, sectors - 2 - _GPT_ARRAY_SECTORS
    start = MIB // 512
    entry = struct.pack("<16s16sQQQ72s", LINUX_FILESYSTEM.bytes_le, uuid.uuid4().bytes_le,
                        start, last_usable, 0, "root".encode("utf-16-le"))
    array = entry.ljust(_GPT_ENTRIES * _GPT_ENTRY_SIZE, b"\0")
    disk_guid = uuid.uuid4().bytes_le

    def header(current: int, backup: int, array_start: int) -> bytes:
        fields = [b"EFI PART", 0x00010000, 92, 0, 0, current, backup, first_usable,
                  last_usable, disk_guid, array_start, _GPT_ENTRIES, _GPT_ENTRY_SIZE,
                  zlib.crc32(array)]
        fields[3] = zlib.crc32(struct.pack(_GPT_HEADER, *fields))
        return struct.pack(_GPT_HEADER, *fields).ljust(512, b"\0")

    mbr = bytearray(512)
    mbr[446:462] = struct.pack("<B3BB3BII", 0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF,
                               1, min(sectors - 1, 0xFFFFFFFF))
    if hybrid_mbr:
        mbr[462:478] = struct.pack("<B3BB3BII", 0x80, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF,
                                   0xFF, start, last_usable - start + 1)
    mbr[510:512] = b"\x55\xaa"
    out = bytearray(size)
    out[0:512] = mbr
    out[512:1024] = header(1, sectors - 1, 2)
    out[1024:1024 + len(array)] = array
    backup_array = (sectors - 1 - _GPT_ARRAY_SECTORS) * 512
    out[backup_array:backup_array + len(array)] = array
    out[-512:] = header(sectors - 1, 1, sectors - 1 - _GPT_ARRAY_SECTORS)
    return bytes(out)

