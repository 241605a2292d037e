"""Operator-supplied scalars (from a TOML file, the environment or a flag) as typed values.

Shared by the settings and by the stores' option tables, so a size or a boolean reads the same
wherever it is written.
"""

from __future__ import annotations

import re
from typing import Any

from glimpse.errors import Invalid

# A value of a TOML table or an environment variable, before conversion.
Scalar = str | int | float | bool

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Parse a byte count with an optional binary suffix: B, and K, M, G or T, each alone or
    followed by B or iB (all powers of 1024, as operators of image services mean them)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:([KMGT])(?:I?B)?|B)?\s*", text.upper())
    if not match:
        raise Invalid(f"Invalid size {text!r}: expected a number with an optional B, K, M, G or "
                      "T suffix (KB/KiB and the like also read)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or ""]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "y", "t"):
        return True
    if value in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise Invalid(f"Invalid boolean {text!r}")


def scalar(default: Any, raw: Any, *, size: bool = False) -> Any:
    """``raw`` as the type of ``default``: a bool, an int or a float; a byte count with
    suffixes when ``size``; anything else unchanged. Malformed booleans and sizes raise Invalid,
    malformed numbers ValueError or TypeError."""
    if size:
        return raw if isinstance(raw, int) else parse_size(str(raw))
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else parse_bool(str(raw))
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw
