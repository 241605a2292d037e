"""oslo.utils' LUKS helpers, loaded when first used instead of with the format inspector.

``oslo_utils.imageutils.format_inspector`` imports ``oslo_utils.imageutils._luks`` at once, and
that module imports the cryptography package, whose native library is about 9 MiB of resident
memory: a sixth of an idle glimpse server, and the biggest piece of it that does no work. The
LUKS inspector needs those helpers only to decrypt a payload with a passphrase, which glimpse
never passes; telling a LUKS image apart reads its header with ``struct`` alone. Everything
else the inspector does with the module is name ``_luks.LUKSHeader`` as a type (an annotation
and a ``typing.cast``).

So a stand-in takes the module's place before the inspector is imported: it answers
``LUKSHeader`` itself and loads the real module on the first use of any other name, then
passes every name through. Should oslo.utils ever use the helpers on the detection path, they
load then and work as before; only the memory is spent. If oslo.utils no longer has the module,
nothing is stood in.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

NAME = "oslo_utils.imageutils._luks"
_PARENT, _, _CHILD = NAME.rpartition(".")
# A stand-in's own identity, kept when it takes on the real module's names.
_OWN = frozenset({"__name__", "__spec__", "__loader__", "__dict__"})


class DeferredModule(types.ModuleType):
    """Stands in for a module until a name it does not hold is looked up."""

    def __init__(self, spec: importlib.machinery.ModuleSpec, **held: Any) -> None:
        super().__init__(spec.name)
        self.__dict__.update(held)
        self._deferred_spec = spec
        self._real: types.ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        # Called only for names not in this module's dict: the first one loads the real module.
        if attribute.startswith("__") or self._real is not None:
            raise AttributeError(attribute)
        spec = self._deferred_spec
        real = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(real)
        self._real = real
        # The inspector keeps this object; from now on it holds everything the real one does.
        self.__dict__.update((k, v) for k, v in real.__dict__.items() if k not in _OWN)
        sys.modules[spec.name] = real
        setattr(sys.modules[_PARENT], _CHILD, real)
        return getattr(real, attribute)


def defer_luks() -> None:
    """Stand a DeferredModule in for oslo.utils' LUKS helpers, unless they are already loaded
    or not there."""
    if NAME in sys.modules:
        return
    parent = importlib.import_module(_PARENT)
    spec = importlib.machinery.PathFinder.find_spec(NAME, list(getattr(parent, "__path__", [])))
    if spec is None or spec.loader is None:
        return
    # A plain dict stands for the TypedDict: annotations and typing.cast do not check it.
    deferred = DeferredModule(spec, LUKSHeader=dict)
    sys.modules[NAME] = deferred
    # ``from oslo_utils.imageutils import _luks`` finds it here without importing anything.
    setattr(parent, _CHILD, deferred)
