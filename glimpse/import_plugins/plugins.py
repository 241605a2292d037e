"""The import plugins as one ImportTransform (glimpse.domain.ports), built from settings.

Order: decompression, then inspection and conversion, then metadata injection. Whenever the
data changed or is converted, the file is inspected with the upload path's rules before
anything else reads it: a qcow2 with a backing file does not get past the stage's checks by
arriving gzipped.

Disk bound: each plugin that changes the data writes one scratch copy; the decompressed copy
is removed once converted, so at most one scratch copy remains, and two exist only while
qemu-img converts a decompressed image. The outcome's file (when not the staged one) is in
``scratch_dir``, which the import flow removes.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Collection
from pathlib import Path

from glimpse.domain.model import Image
from glimpse.domain.ports import TransformOutcome
from glimpse.errors import Invalid
from glimpse.import_plugins.conversion import TARGETS, Conversion, ConversionLimits
from glimpse.import_plugins.decompression import Decompression
from glimpse.import_plugins.injection import MetadataInjection, parse_properties
from glimpse.import_plugins.inspection import FileFormat, inspect_file
from glimpse.settings import Settings
from glimpse.streams.inspection import InspectionRules


@dataclasses.dataclass(frozen=True)
class ImportPlugins:
    """The ImportTransform of the configured plugins; with none, the staged file unchanged."""

    rules: InspectionRules
    decompression: Decompression | None = None
    conversion: Conversion | None = None
    injection: MetadataInjection | None = None

    def apply(self, staged: Path, scratch_dir: Path, image: Image, *,
              roles: Collection[str] = ()) -> TransformOutcome:
        """``roles``: the importing user's, for injection's ignored roles (when the flow
        does not pass them, properties are injected whoever imports)."""
        path = staged
        found: FileFormat | None = None
        try:
            if self.decompression is not None:
                path = self.decompression.apply(staged, scratch_dir,
                                                image.container_format) or staged
            if path is not staged or self.conversion is not None:
                found = inspect_file(path, self.rules, image.disk_format,
                                     image.container_format)
            if self.conversion is not None and found is not None:
                converted = self.conversion.apply(path, found, scratch_dir)
                if converted is not None:
                    if path is not staged:
                        path.unlink()
                    path, found = converted
        except BaseException:
            if path is not staged:
                path.unlink(missing_ok=True)
            raise
        extra = self.injection.for_roles(roles) if self.injection is not None else {}
        if found is None:
            return TransformOutcome(path, extra_properties=extra)
        return TransformOutcome(path, disk_format=found.format,
                                virtual_size=found.virtual_size or None,
                                extra_properties=extra)


def build_import_plugins(settings: Settings) -> ImportPlugins:
    """The plugins the settings enable; Invalid (at start-up) for a bad setting or a missing
    tool."""
    rules = InspectionRules(frozenset(settings.inspection_disk_formats),
                            settings.inspection_strict_raw,
                            settings.inspection_relax_partition_checks)
    cap = settings.image_size_cap
    decompression = None
    if settings.import_decompress:
        bound = settings.import_decompress_max_size
        if bound < 0:
            raise Invalid("import_decompress_max_size must be >= 0 (0: image_size_cap)")
        decompression = Decompression(min(bound, cap) if bound else cap)
    conversion = None
    if settings.import_convert_to:
        if settings.import_convert_to not in TARGETS:
            raise Invalid(f"import_convert_to: {settings.import_convert_to!r} is not one of "
                          f"{', '.join(TARGETS)} (empty: no conversion)")
        qemu_img, prlimit = shutil.which("qemu-img"), shutil.which("prlimit")
        if qemu_img is None or prlimit is None:
            raise Invalid("import_convert_to needs qemu-img (Debian package qemu-utils) and "
                          "prlimit (util-linux) on the PATH")
        if min(settings.import_convert_timeout, settings.import_convert_cpu_seconds,
               settings.import_convert_address_space) <= 0:
            raise Invalid("import_convert_timeout, import_convert_cpu_seconds and "
                          "import_convert_address_space must be positive")
        conversion = Conversion(settings.import_convert_to, qemu_img, prlimit, ConversionLimits(
            settings.import_convert_timeout, settings.import_convert_cpu_seconds,
            settings.import_convert_address_space, cap))
    injection = None
    if settings.import_inject_properties:
        injection = MetadataInjection(parse_properties(settings.import_inject_properties),
                                      settings.import_inject_ignore_roles)
    return ImportPlugins(rules, decompression, conversion, injection)
