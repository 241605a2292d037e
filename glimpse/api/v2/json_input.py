"""Request bodies as JSON, strictly: what v2's create and PATCH parse.

Python's ``json`` accepts things a client cannot mean and the service must not store: a key
given twice (the last silently wins), ``NaN`` and ``Infinity``, lone UTF-16 surrogates from
``\\ud800`` escapes (which no database can encode), NUL characters (PostgreSQL refuses them in
text) and nesting deep enough to exhaust the interpreter's stack. Each is a 400 here.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from glimpse.errors import Invalid

# No v2 body nests deeper than a PATCH's location metadata; 32 levels leave room for an
# operator's metadata while a hostile "[[[[..." stops long before the stack does.
MAX_DEPTH = 32
MALFORMED = "Malformed JSON in request body."


def load_json(raw: bytes) -> Any:
    """The JSON document in ``raw`` (UTF-8), or Invalid saying why there is none."""
    if not raw.strip():
        raise Invalid("Body expected in request.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("The request body must be UTF-8 text.") from exc
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys,
                              parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise Invalid(f"Duplicate key in JSON object: {exc.args[0]}") from None
    except RecursionError as exc:
        raise Invalid(f"{MALFORMED} It nests deeper than {MAX_DEPTH} levels.") from exc
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4300 digits
        raise Invalid(MALFORMED) from exc
    _check_tree(document)
    return document


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(_quoted(key))
            seen.add(key)
    return document


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _check_tree(document: Any) -> None:
    """Depth and string content of every value, without recursion (a deep document is the
    hostile case this guards against)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise Invalid(f"{MALFORMED} It nests deeper than {MAX_DEPTH} levels.")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise Invalid("JSON strings may not contain NUL characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid("JSON strings may not contain unpaired UTF-16 surrogates.") from exc


def _quoted(key: str) -> str:
    shown = key if len(key) <= 60 else f"{key[:60]}..."
    return json.dumps(shown, ensure_ascii=False)
