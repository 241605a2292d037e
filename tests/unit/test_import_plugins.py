"""The import plugins (glimpse.import_plugins): decompression, inspection and conversion with
qemu-img, metadata injection, each with the hostile input it must refuse. Images are built
with qemu-img (tests skip, naming it, where it is missing; scripts/test-tools installs it)."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import json
import lzma
import os
import shutil
import subprocess
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from glimpse.domain.model import Image, Status
from glimpse.domain.ports import ImportTransform, TransformOutcome
from glimpse.errors import Forbidden, Invalid, OverLimit
from glimpse.import_plugins import ImportPlugins, build_import_plugins
from glimpse.import_plugins.conversion import Conversion, ConversionLimits
from glimpse.import_plugins.inspection import inspect_file
from glimpse.settings import Settings
from glimpse.streams.inspection import InspectionRules
from tests.e2e.disk_images import HOST_SECRET, Corpus, edit_descriptor, qcow2_header, qemu_img

MIB = 1 << 20
RULES = InspectionRules(frozenset(("raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso")))
# Random, so that a conversion that loses or moves data is seen by qemu-img compare.
CONTENT = os.urandom(MIB) + bytes(MIB) + os.urandom(MIB // 2) + bytes(MIB // 2)


def image(disk_format: str | None = "raw", container_format: str | None = "bare") -> Image:
    return Image(id="0b7a3c3e-4f7d-4d4e-9d0e-6b1f0c7a1a11", status=Status.IMPORTING,
                 disk_format=disk_format, container_format=container_format)


def plugins(**settings: object) -> ImportPlugins:
    return build_import_plugins(dataclasses.replace(Settings(), **settings))  # type: ignore[arg-type]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    staged, scratch = tmp_path / "staged", tmp_path / "scratch"
    staged.mkdir()
    scratch.mkdir()
    return staged, scratch


def stage(directory: Path, data: bytes, name: str = "image") -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def zipped(*members: tuple[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


# -- nothing enabled ----------------------------------------------------------------------


def test_with_no_plugin_the_staged_file_is_stored_unchanged(dirs: tuple[Path, Path]) -> None:
    staged = stage(dirs[0], gzip.compress(CONTENT))
    transform: ImportTransform = build_import_plugins(Settings())
    assert transform.apply(staged, dirs[1], image()) == TransformOutcome(staged)
    assert list(dirs[1].iterdir()) == []


# -- decompression --------------------------------------------------------------------------

COMPRESSORS = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zip-deflated": lambda data: zipped(("disk.raw", data)),
    "zip-stored": lambda data: zipped(("disk.raw", data), method=zipfile.ZIP_STORED),
}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_decompresses_each_kind(dirs: tuple[Path, Path], kind: str) -> None:
    packed = COMPRESSORS[kind](CONTENT)
    staged = stage(dirs[0], packed)
    outcome = plugins(import_decompress=True).apply(staged, dirs[1], image())
    assert outcome.path.parent == dirs[1]
    assert outcome.path.read_bytes() == CONTENT
    assert staged.read_bytes() == packed  # the staged file is the flow's: left as it was
    assert outcome.disk_format == "raw" and outcome.virtual_size == len(CONTENT)
    assert list(dirs[1].iterdir()) == [outcome.path]


def test_uncompressed_and_keep_compressed_data_is_left_alone(dirs: tuple[Path, Path]) -> None:
    decompress = plugins(import_decompress=True)
    staged = stage(dirs[0], CONTENT)
    assert decompress.apply(staged, dirs[1], image()) == TransformOutcome(staged)
    packed = stage(dirs[0], gzip.compress(CONTENT), "packed")
    kept = decompress.apply(packed, dirs[1], image(container_format="compressed"))
    assert kept == TransformOutcome(packed)
    assert list(dirs[1].iterdir()) == []


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zip-deflated"])
def test_a_bomb_is_refused_without_writing_past_the_bound(dirs: tuple[Path, Path],
                                                         kind: str) -> None:
    bomb = COMPRESSORS[kind](bytes(64 * MIB))
    assert len(bomb) < MIB // 4
    staged = stage(dirs[0], bomb)
    with pytest.raises(OverLimit, match=f"more than {4 * MIB} bytes"):
        plugins(import_decompress=True, import_decompress_max_size=4 * MIB).apply(
            staged, dirs[1], image())
    assert list(dirs[1].iterdir()) == []


def test_the_image_size_cap_bounds_decompression_too(dirs: tuple[Path, Path]) -> None:
    staged = stage(dirs[0], gzip.compress(bytes(8 * MIB)))
    capped = plugins(import_decompress=True, import_decompress_max_size=64 * MIB,
                     image_size_cap=2 * MIB)
    with pytest.raises(OverLimit, match=f"more than {2 * MIB} bytes"):
        capped.apply(staged, dirs[1], image())


def test_decompression_memory_stays_bounded(dirs: tuple[Path, Path]) -> None:
    staged = stage(dirs[0], gzip.compress(bytes(48 * MIB)))
    tracemalloc.start()
    try:
        outcome = plugins(import_decompress=True).apply(staged, dirs[1], image())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.path.stat().st_size == 48 * MIB
    assert peak < 8 * MIB, peak  # a few chunks, never the image


def test_a_multi_member_zip_is_refused(dirs: tuple[Path, Path]) -> None:
    staged = stage(dirs[0], zipped(("a.raw", CONTENT), ("b.raw", b"second")))
    with pytest.raises(Invalid, match="holds 2 members"):
        plugins(import_decompress=True).apply(staged, dirs[1], image())
    assert list(dirs[1].iterdir()) == []


def test_other_zip_shapes_are_refused(dirs: tuple[Path, Path]) -> None:
    decompress = plugins(import_decompress=True)
    cases = {
        "a directory": zipped(("dir/", b"")),
        "compression method 12": zipped(("disk.raw", CONTENT), method=zipfile.ZIP_BZIP2),
    }
    for problem, data in cases.items():
        with pytest.raises(Invalid, match=problem):
            decompress.apply(stage(dirs[0], data), dirs[1], image())
    encrypted = bytearray(zipped(("disk.raw", CONTENT)))
    central = encrypted.rindex(b"PK\x01\x02")
    encrypted[central + 8] |= 0x1  # the central directory's "encrypted" flag
    with pytest.raises(Invalid, match="encrypted"):
        decompress.apply(stage(dirs[0], bytes(encrypted)), dirs[1], image())
    with pytest.raises(OverLimit, match="member has"):
        plugins(import_decompress=True, import_decompress_max_size=1000).apply(
            stage(dirs[0], zipped(("disk.raw", bytes(MIB)))), dirs[1], image())
    assert list(dirs[1].iterdir()) == []


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_truncated_archives_are_refused(dirs: tuple[Path, Path], kind: str) -> None:
    packed = COMPRESSORS[kind](CONTENT)
    staged = stage(dirs[0], packed[:len(packed) * 2 // 3])
    with pytest.raises(Invalid, match="damaged"):
        plugins(import_decompress=True).apply(staged, dirs[1], image())
    assert list(dirs[1].iterdir()) == []


def test_a_corrupted_gzip_is_refused(dirs: tuple[Path, Path]) -> None:
    packed = bytearray(gzip.compress(CONTENT))
    packed[len(packed) // 2] ^= 0xFF
    with pytest.raises(Invalid, match="damaged"):
        plugins(import_decompress=True).apply(stage(dirs[0], bytes(packed)), dirs[1], image())
    assert list(dirs[1].iterdir()) == []


def test_decompressed_content_is_inspected_as_an_upload_is(dirs: tuple[Path, Path]) -> None:
    # A qcow2 naming a backing file, gzipped: the stage saw only gzip bytes.
    hostile = gzip.compress(qcow2_header(b"/etc/passwd") + bytes(4096))
    with pytest.raises(Invalid, match="qcow2"):
        plugins(import_decompress=True).apply(stage(dirs[0], hostile), dirs[1],
                                              image("qcow2"))
    # Raw content claiming to be qcow2 once decompressed.
    with pytest.raises(Invalid, match="does not match disk_format qcow2: it is raw"):
        plugins(import_decompress=True).apply(stage(dirs[0], gzip.compress(CONTENT), "two"),
                                              dirs[1], image("qcow2"))
    assert list(dirs[1].iterdir()) == []


# -- metadata injection -----------------------------------------------------------------------


def test_injection_adds_properties_unless_a_role_is_ignored(dirs: tuple[Path, Path]) -> None:
    inject = plugins(import_inject_properties=("hw_firmware: uefi", "site:edge-1"))
    staged = stage(dirs[0], CONTENT)
    outcome = inject.apply(staged, dirs[1], image(), roles=("member", "reader"))
    assert outcome == TransformOutcome(staged, extra_properties={"hw_firmware": "uefi",
                                                                 "site": "edge-1"})
    assert inject.apply(staged, dirs[1], image(), roles=("admin",)).extra_properties == {}
    custom = plugins(import_inject_properties=("a:b",), import_inject_ignore_roles=("ops",))
    assert custom.apply(staged, dirs[1], image(), roles=("admin",)).extra_properties == {
        "a": "b"}


@pytest.mark.parametrize("entry, error", [
    ("novalue", Invalid), (":value", Invalid), ("status:active", Invalid),
    ("os_glance_import_task:x", Forbidden), ("k" * 300 + ":v", Invalid),
])
def test_injection_settings_are_checked(entry: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        plugins(import_inject_properties=(entry,))


def test_settings_are_checked_at_build() -> None:
    with pytest.raises(Invalid, match="import_convert_to"):
        plugins(import_convert_to="vmdk")
    with pytest.raises(Invalid, match="import_decompress_max_size"):
        plugins(import_decompress=True, import_decompress_max_size=-1)


def test_settings_load_from_the_environment() -> None:
    from glimpse.settings import load
    settings = load(environ={"GLIMPSE_IMPORT_DECOMPRESS": "true",
                             "GLIMPSE_IMPORT_DECOMPRESS_MAX_SIZE": "2GB",
                             "GLIMPSE_IMPORT_CONVERT_TO": "raw",
                             "GLIMPSE_IMPORT_INJECT_PROPERTIES": "a:1,b:2"})
    assert settings.import_decompress is True
    assert settings.import_decompress_max_size == 2 << 30
    assert settings.import_inject_properties == ("a:1", "b:2")
    assert settings.import_inject_ignore_roles == ("admin",)
    # Worker processes get the settings as JSON: the new ones survive it.
    from glimpse.settings import from_json, to_json
    assert from_json(to_json(settings)) == settings


# -- conversion: limits, with stand-ins for qemu-img --------------------------------------------


def fake_tool(directory: Path, body: str) -> str:
    path = directory / "fake-qemu-img"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def converter(tool: str, timeout: float = 30.0, cpu: int = 30, cap: int = 1 << 40,
              target: str = "raw") -> ImportPlugins:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit is missing (util-linux)")
    return ImportPlugins(RULES, conversion=Conversion(
        target, tool, prlimit, ConversionLimits(timeout, cpu, 2 << 30, cap)))


@pytest.fixture
def qcow2_file(dirs: tuple[Path, Path]) -> Path:
    tool = qemu_img()
    raw = stage(dirs[0], CONTENT, "source.raw")
    out = dirs[0] / "source.qcow2"
    subprocess.run([tool, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    return out


def test_a_conversion_past_its_timeout_is_refused(dirs: tuple[Path, Path],
                                                  qcow2_file: Path) -> None:
    slow = converter(fake_tool(dirs[0], "exec sleep 30"), timeout=0.5)
    with pytest.raises(Invalid, match=r"longer than 0\.5 seconds"):
        slow.apply(qcow2_file, dirs[1], image("qcow2"))
    assert list(dirs[1].iterdir()) == []


def test_a_conversion_past_its_cpu_limit_is_refused(dirs: tuple[Path, Path],
                                                    qcow2_file: Path) -> None:
    spin = converter(fake_tool(dirs[0], "while :; do :; done"), cpu=1)
    with pytest.raises(Invalid, match="stopped by its resource limits"):
        spin.apply(qcow2_file, dirs[1], image("qcow2"))
    assert list(dirs[1].iterdir()) == []


def test_a_failing_qemu_img_is_refused_without_its_paths(dirs: tuple[Path, Path],
                                                        qcow2_file: Path) -> None:
    failing = converter(fake_tool(dirs[0], 'echo "cannot open $9" >&2; exit 1'))
    with pytest.raises(Invalid, match="could not convert the qcow2 image") as caught:
        failing.apply(qcow2_file, dirs[1], image("qcow2"))
    assert str(dirs[0]) not in caught.value.message
    assert list(dirs[1].iterdir()) == []


def test_a_raw_target_over_the_cap_is_refused_before_qemu_img(dirs: tuple[Path, Path],
                                                              qcow2_file: Path) -> None:
    tripwire = dirs[0] / "ran"
    small = converter(fake_tool(dirs[0], f"touch {tripwire}; exit 1"), cap=MIB)
    with pytest.raises(OverLimit, match="virtual size"):
        small.apply(qcow2_file, dirs[1], image("qcow2"))
    assert not tripwire.exists()


def test_inspection_reads_a_large_file_in_bounded_memory(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.raw"
    with sparse.open("wb") as f:
        f.truncate(64 * MIB)
    tracemalloc.start()
    try:
        found = inspect_file(sparse, RULES, "raw", "bare")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (found.format, found.virtual_size) == ("raw", 64 * MIB)
    assert peak < 12 * MIB, peak


# -- conversion with qemu-img: a real corpus ---------------------------------------------------

# glimpse's disk format -> qemu-img's format and creation options.
SOURCES = {
    "qcow2": ("qcow2", "qcow2", ()),
    "vmdk": ("vmdk", "vmdk", ()),
    "vmdk-stream": ("vmdk", "vmdk", ("-o", "subformat=streamOptimized")),
    "vhd": ("vhd", "vpc", ()),
    "vhd-fixed": ("vhd", "vpc", ("-o", "subformat=fixed")),
    "vhdx": ("vhdx", "vhdx", ()),
    "vdi": ("vdi", "vdi", ()),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Corpus]]:
    workdir = tmp_path_factory.mktemp("corpus")
    made = Corpus(workdir)
    raw = workdir / "content.raw"
    raw.write_bytes(CONTENT)
    for name, (_, qemu_format, options) in SOURCES.items():
        subprocess.run([made.tool, "convert", "-q", "-f", "raw", "-O", qemu_format, *options,
                        str(raw), str(workdir / name)], check=True)
    yield raw, made


def info(tool: str, path: Path, fmt: str) -> dict[str, object]:
    out = subprocess.run([tool, "info", "--output=json", "-f", fmt, str(path)], check=True,
                         capture_output=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def compare(tool: str, a: Path, a_format: str, b: Path, b_format: str) -> None:
    done = subprocess.run([tool, "compare", "-q", "-f", a_format, "-F", b_format, str(a), str(b)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_format_converts_to_raw(corpus: tuple[Path, Corpus], dirs: tuple[Path, Path],
                                     name: str) -> None:
    _, made = corpus
    disk_format, qemu_format, _ = SOURCES[name]
    source = made.dir / name
    outcome = plugins(import_convert_to="raw").apply(source, dirs[1], image(disk_format))
    assert outcome.path.parent == dirs[1] and outcome.disk_format == "raw"
    assert outcome.virtual_size == info(made.tool, source, qemu_format)["virtual-size"]
    assert outcome.virtual_size == outcome.path.stat().st_size
    compare(made.tool, source, qemu_format, outcome.path, "raw")
    assert outcome.path.read_bytes()[:len(CONTENT)] == CONTENT
    assert list(dirs[1].iterdir()) == [outcome.path]


@pytest.mark.parametrize("name", ["vmdk", "vhdx", "vdi", "vhd"])
def test_formats_convert_to_qcow2(corpus: tuple[Path, Corpus], dirs: tuple[Path, Path],
                                  name: str) -> None:
    _, made = corpus
    disk_format, qemu_format, _ = SOURCES[name]
    source = made.dir / name
    outcome = plugins(import_convert_to="qcow2").apply(source, dirs[1], image(disk_format))
    assert outcome.disk_format == "qcow2"
    details = info(made.tool, outcome.path, "qcow2")
    assert details["format"] == "qcow2"
    assert outcome.virtual_size == details["virtual-size"] == info(
        made.tool, source, qemu_format)["virtual-size"]
    compare(made.tool, source, qemu_format, outcome.path, "qcow2")


def test_an_image_already_in_the_target_format_is_left_alone(
        corpus: tuple[Path, Corpus], dirs: tuple[Path, Path]) -> None:
    raw, made = corpus
    qcow2 = made.dir / "qcow2"
    outcome = plugins(import_convert_to="qcow2").apply(qcow2, dirs[1], image("qcow2"))
    assert outcome.path == qcow2 and outcome.disk_format == "qcow2"
    assert outcome.virtual_size == info(made.tool, qcow2, "qcow2")["virtual-size"]
    left = plugins(import_convert_to="qcow2").apply(raw, dirs[1], image("raw"))
    assert left.path == raw and left.disk_format == "raw"  # raw is not a converted format
    assert list(dirs[1].iterdir()) == []


def test_gzipped_qcow2_is_decompressed_then_converted(corpus: tuple[Path, Corpus],
                                                     dirs: tuple[Path, Path]) -> None:
    raw, made = corpus
    staged = stage(dirs[0], gzip.compress((made.dir / "qcow2").read_bytes()))
    both = plugins(import_decompress=True, import_convert_to="raw")
    outcome = both.apply(staged, dirs[1], image("qcow2"))
    assert outcome.disk_format == "raw"
    compare(made.tool, raw, "raw", outcome.path, "raw")
    # The decompressed copy is gone once converted: one scratch file remains.
    assert list(dirs[1].iterdir()) == [outcome.path]


def hostile_images(made: Corpus) -> dict[str, tuple[str, bytes]]:
    """name -> (claimed disk_format, bytes)."""
    benign_vmdk = (made.dir / "vmdk").read_bytes()
    qcow2 = (made.dir / "qcow2").read_bytes()
    passwd = edit_descriptor(made.create("passwd.vmdk", "vmdk"), lambda text: text.replace(
        b'"passwd.vmdk"', b'"/etc/passwd"'))
    return {
        "qcow2-backing": ("qcow2", made.create(
            "backing.qcow2", "qcow2", "-u", "-b", str(made.host_file), "-F", "raw")),
        "qcow2-data-file": ("qcow2", made.create(
            "datafile.qcow2", "qcow2", "-o", f"data_file={made.dir / 'data-file.raw'}")),
        "qcow2-short-backing": ("qcow2", qcow2_header(str(made.host_file).encode())),
        "vmdk-flat": ("vmdk", made.create("flat.vmdk", "vmdk", "-o",
                                          "subformat=monolithicFlat")),
        "vmdk-extent-etc-passwd": ("vmdk", passwd),
        "vmdk-parent-hint": ("vmdk", edit_descriptor(benign_vmdk, lambda text: text.replace(
            b"createType=", b'parentFileNameHint="' + str(made.host_file).encode()
            + b'"\ncreateType='))),
        "raw-claiming-qcow2": ("qcow2", CONTENT),
        "qcow2-claiming-vmdk": ("vmdk", qcow2),
        "qcow2-truncated": ("qcow2", qcow2[:100]),
        "vmdk-truncated": ("vmdk", benign_vmdk[:700]),
    }


def test_hostile_images_are_refused_before_qemu_img_opens_them(
        corpus: tuple[Path, Corpus], dirs: tuple[Path, Path]) -> None:
    _, made = corpus
    tripwire = dirs[0] / "qemu-img-ran"
    guarded = converter(fake_tool(dirs[0], f"touch {tripwire}; exec {made.tool} \"$@\""))
    real = plugins(import_convert_to="raw")
    refused = {}
    for name, (claimed, data) in hostile_images(made).items():
        staged = stage(dirs[0], data, name)
        for transform in (guarded, real):
            with pytest.raises(Invalid) as caught:
                transform.apply(staged, dirs[1], image(claimed))
        refused[name] = caught.value.message
        assert not tripwire.exists(), name
    assert list(dirs[1].iterdir()) == []
    assert "backing" in refused["qcow2-backing"].lower()
    assert "data" in refused["qcow2-data-file"].lower()
    assert "it is raw" in refused["raw-claiming-qcow2"]
    assert "it is qcow2" in refused["qcow2-claiming-vmdk"]
    for message in refused.values():
        assert HOST_SECRET.decode() not in message


def test_the_benign_corpus_passes_the_guard(corpus: tuple[Path, Corpus],
                                            dirs: tuple[Path, Path]) -> None:
    """The tripwire above is live: a benign image does reach qemu-img through it."""
    _, made = corpus
    tripwire = dirs[0] / "qemu-img-ran"
    guarded = converter(fake_tool(dirs[0], f"touch {tripwire}; exec {made.tool} \"$@\""))
    outcome = guarded.apply(made.dir / "vdi", dirs[1], image("vdi"))
    assert tripwire.exists() and outcome.disk_format == "raw"


FLAT_DESCRIPTOR = b"""# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 2048 FLAT "/etc/passwd" 0

ddb.virtualHWVersion = "4"
ddb.adapterType = "ide"
"""


def test_a_flat_vmdk_descriptor_naming_etc_passwd(corpus: tuple[Path, Corpus],
                                                  dirs: tuple[Path, Path]) -> None:
    _, made = corpus
    tripwire = dirs[0] / "qemu-img-ran"
    guarded = converter(fake_tool(dirs[0], f"touch {tripwire}; exec {made.tool} \"$@\""))
    staged = stage(dirs[0], FLAT_DESCRIPTOR, "descriptor.vmdk")
    # The inspector knows a bare descriptor as a VMDK, whatever it is claimed to be.
    for claimed in ("vmdk", "raw", None):
        with pytest.raises(Invalid, match=r"vmdk and fails its safety checks.*subformat"):
            guarded.apply(staged, dirs[1], image(claimed))
    assert not tripwire.exists()
    assert list(dirs[1].iterdir()) == []


def test_an_image_in_the_target_format_is_still_inspected(corpus: tuple[Path, Corpus],
                                                         dirs: tuple[Path, Path]) -> None:
    _, made = corpus
    claimed, data = hostile_images(made)["qcow2-backing"]
    with pytest.raises(Invalid, match=r"(?i)backing"):
        plugins(import_convert_to="qcow2").apply(stage(dirs[0], data), dirs[1], image(claimed))
