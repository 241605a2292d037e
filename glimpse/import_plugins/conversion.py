"""Conversion of an imported image with qemu-img, to raw or qcow2.

The input has been inspected (inspection.inspect_file) before this runs: qemu-img opens only
a file whose format oslo.utils' inspector recognised and whose safety checks passed, and is
told that format (``-f``), so it never probes. It runs under prlimit, with a CPU-time and an
address-space limit (as Glance and nova run qemu-img), and a wall-clock timeout; it reads the
input from disk and writes one scratch copy, never holding the image in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from glimpse.errors import Invalid, OverLimit
from glimpse.import_plugins.inspection import FileFormat
from glimpse.inspection.oslo import OsloDetector
from glimpse.log_format import escape_controls

log = logging.getLogger(__name__)

TARGETS = ("raw", "qcow2")
# The formats converted, by their name in glimpse and in qemu-img.
QEMU_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi"}
# What of qemu-img's error output reaches the log (it is the tool's own text about a file
# it could not read; the answer to the client names only the cause).
STDERR_KEPT = 2000


@dataclasses.dataclass(frozen=True)
class ConversionLimits:
    timeout: float  # seconds of wall-clock time
    cpu_seconds: int
    address_space: int  # bytes
    size_cap: int  # the most bytes the converted image may have


class Conversion:
    def __init__(self, target: str, qemu_img: str, prlimit: str,
                 limits: ConversionLimits) -> None:
        if target not in TARGETS:
            raise Invalid(f"import_convert_to: {target!r} is not one of {', '.join(TARGETS)}")
        self.target = target
        self._qemu_img = qemu_img
        self._prlimit = prlimit
        self._limits = limits

    def apply(self, source: Path, found: FileFormat, scratch_dir: Path
              ) -> tuple[Path, FileFormat] | None:
        """The converted copy in ``scratch_dir`` and what it is; None when ``found`` is
        already the target or not a format converted (raw, iso). Invalid or OverLimit,
        leaving no file, when refused or when qemu-img fails."""
        if found.format == self.target or found.format not in QEMU_FORMATS:
            return None
        cap = self._limits.size_cap
        if self.target == "raw" and found.virtual_size > cap:
            raise OverLimit(f"The {found.format} image's virtual size ({found.virtual_size} "
                            f"bytes) is over the image size cap ({cap} bytes) as raw.")
        fd, name = tempfile.mkstemp(dir=scratch_dir, prefix=f"converted-{self.target}-")
        os.close(fd)
        out = Path(name)
        try:
            self._run(found.format, source, out)
            size = out.stat().st_size
            if size > cap:
                raise OverLimit(f"The converted image has {size} bytes, over the image size "
                                f"cap ({cap} bytes).")
            virtual = size if self.target == "raw" else _qcow2_virtual_size(out)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return out, FileFormat(self.target, virtual)

    def _run(self, fmt: str, source: Path, out: Path) -> None:
        limits = self._limits
        command = [
            self._prlimit, f"--cpu={limits.cpu_seconds}", f"--as={limits.address_space}", "--",
            self._qemu_img, "convert", "-q", "-f", QEMU_FORMATS[fmt], "-O", self.target,
            str(source), str(out),
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=limits.timeout,
                                  check=False, stdin=subprocess.DEVNULL,
                                  env={"PATH": os.defpath, "LC_ALL": "C"})
        except subprocess.TimeoutExpired as exc:
            raise Invalid(f"Converting the {fmt} image took longer than {limits.timeout:g} "
                          "seconds: refused.") from exc
        if done.returncode == 0:
            return
        stderr = done.stderr[-STDERR_KEPT:].decode("utf-8", "replace")
        log.warning("qemu-img convert from %s failed (status %s): %s", fmt, done.returncode,
                    escape_controls(stderr))
        if done.returncode < 0:
            raise Invalid(f"Converting the {fmt} image was stopped by its resource limits "
                          f"(signal {-done.returncode}): refused.")
        raise Invalid(f"qemu-img could not convert the {fmt} image to {self.target} "
                      f"(exit status {done.returncode}).")


def _qcow2_virtual_size(path: Path) -> int:
    """A qcow2 file's virtual size, from its header (the first block is enough)."""
    detector = OsloDetector(with_footer=False, formats=("qcow2",))
    with path.open("rb") as f:
        detector.feed(f.read(1 << 16))
    matches = detector.finish().matches
    if not matches or not matches[0].virtual_size:
        raise Invalid("qemu-img wrote a qcow2 image whose header cannot be read.")
    return matches[0].virtual_size
