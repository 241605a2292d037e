"""Import plugins (decompression, conversion with qemu-img, metadata injection): the
ImportTransform the v2 import flow applies between staging and storing an image. See
plugins.py and docs/import-plugins.md."""

from glimpse.import_plugins.plugins import ImportPlugins, build_import_plugins

__all__ = ["ImportPlugins", "build_import_plugins"]
