"""Disk-image format detection over oslo.utils' format inspector.

Importing the package first defers oslo.utils' LUKS helpers (see deferred_luks), so the
inspector is never imported before that is done."""

from glimpse.inspection.deferred_luks import defer_luks

defer_luks()
