"""oslo.utils' LUKS helpers load on first use, not with the inspector (inspection/deferred_luks).

Each check runs in a fresh interpreter: what a test process imported before would decide it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A LUKS1 header as cryptsetup writes it (the fields oslo.utils' inspector reads), then the
# payload: version 1, aes xts-plain64 sha256, payload at sector 4096, 64-byte key.
LUKS_IMAGE = """
import struct
header = struct.pack('>6sH32s32s32sII20s32sI', b'LUKS\\xba\\xbe', 1, b'aes', b'xts-plain64',
                     b'sha256', 4096, 64, bytes(20), bytes(32), 1000)
image = header.ljust(4096 * 512, b'\\0') + bytes(1 << 20)
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_server_imports_no_cryptography_and_still_tells_luks_apart() -> None:
    out = _run(LUKS_IMAGE + """
import sys
import glimpse.app
from glimpse.inspection.oslo import OsloDetector
detector = OsloDetector()
for at in range(0, len(image), 1 << 20):
    detector.feed(image[at:at + (1 << 20)])
found = detector.finish()
print([(m.format, m.problems) for m in found.matches], 'cryptography' in sys.modules)
""")
    assert out == "[('luks', ())] False"


def test_the_helpers_load_on_first_use_and_then_are_the_real_module() -> None:
    out = _run("""
import sys
import glimpse.inspection.oslo
from oslo_utils.imageutils import format_inspector as fi
before = 'cryptography' in sys.modules
slots = fi._luks.NUM_KEY_SLOTS
import oslo_utils.imageutils._luks as real
print(before, slots, 'cryptography' in sys.modules, fi._luks.decrypt_data is real.decrypt_data,
      type(real).__name__)
""")
    assert out == "False 8 True True module"


def test_nothing_is_stood_in_once_the_helpers_are_loaded() -> None:
    out = _run("""
import oslo_utils.imageutils._luks as real
import glimpse.inspection.oslo
from oslo_utils.imageutils import format_inspector as fi
print(fi._luks is real)
""")
    assert out == "True"


@pytest.mark.parametrize("name", ["__file__", "__path__"])
def test_dunder_lookups_do_not_load_the_helpers(name: str) -> None:
    # Tools that walk sys.modules (coverage, debuggers) ask every module for these.
    out = _run(f"""
import sys
import glimpse.inspection
print(hasattr(sys.modules['oslo_utils.imageutils._luks'], {name!r}),
      'cryptography' in sys.modules)
""")
    assert out == "False False"
