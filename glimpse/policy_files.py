"""Operators' policy files: Glance's ``policy.yaml`` and ``policy.d``, parsed by oslo.policy and
evaluated without its ``Enforcer``.

``PolicyFiles`` is the domain's ``RuleOverrides``: it answers only for the rules the files
change or add; every other rule stays the domain's hand-written predicate (which follows an
overridden ``context_is_admin``, ``service_api`` or ``default`` through the Policy). Where it
answers, the check trees oslo.policy parsed from the files are evaluated directly
(glimpse.policy_language): ``Enforcer.enforce`` would re-stat the files and loop over every
registered rule on each call (spec identity.md §2).

The files are looked at again at most every ``reload_interval`` seconds, in the request that
finds the interval passed. A broken edit keeps the rules in force and logs why.

oslo.policy is the optional extra ``glimpse[policy]``: this module imports it, and nothing
imports this module unless a policy file or directory is configured.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from oslo_policy import policy

from glimpse.domain.model import Principal
from glimpse.domain.policy import RULES, Rule
from glimpse.policy_language import (
    PolicyFileError,
    RuleSet,
    compile_rules,
    credentials,
    evaluate,
    parse,
)

__all__ = ["PolicyFileError", "PolicyFiles", "PolicySources"]

log = logging.getLogger(__name__)


# --- reading the files --------------------------------------------------------------------

def _policy_dir_files(directory: Path) -> list[Path]:
    """A ``policy.d``'s files as oslo.policy reads them: no sub-directories, no dot files,
    in name order."""
    return sorted(entry for entry in directory.iterdir()
                  if entry.is_file() and not entry.name.startswith("."))


def _stamp(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


@dataclasses.dataclass(frozen=True)
class PolicySources:
    """Where the rules come from: the file, then each directory's files on top, in order
    (later files win, as in oslo.policy)."""

    file: Path | None
    dirs: tuple[Path, ...] = ()

    def paths(self) -> list[Path]:
        """The files to read, in merge order. A directory that does not exist is skipped, as
        oslo.policy skips it; a missing policy file is an error (it was asked for)."""
        found = [] if self.file is None else [self.file]
        for directory in self.dirs:
            if directory.exists():
                if not directory.is_dir():
                    raise PolicyFileError(f"policy_dirs entry {directory} is not a directory")
                try:
                    found.extend(_policy_dir_files(directory))
                except OSError as exc:
                    raise PolicyFileError(f"policy_dirs entry {directory}: cannot be listed: "
                                          f"{exc.strerror or exc}") from exc
        return found

    def signature(self) -> tuple[object, ...]:
        """What changes when any file is edited, added, removed or replaced: compared to
        decide whether to read the files again (a few stat calls)."""
        parts: list[object] = []
        try:
            if self.file is not None:
                parts.append(_stamp(self.file))
            for directory in self.dirs:
                parts.append(str(directory))
                if directory.is_dir():
                    parts.extend(_stamp(path) for path in _policy_dir_files(directory))
        except OSError as exc:
            # Unreadable now: a changed state, which the reload then reports.
            parts.append(("error", str(exc)))
        return tuple(parts)

    def __str__(self) -> str:
        return ", ".join(str(p) for p in (*([self.file] if self.file else []), *self.dirs))

    def read(self) -> dict[str, str]:
        """Every file's rules merged, later files winning. Raises PolicyFileError naming the
        file and the problem."""
        merged: dict[str, str] = {}
        for path in self.paths():
            merged.update(_read_file(path))
        return merged


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyFileError(f"policy file {path}: cannot be read: "
                              f"{exc.strerror or exc}") from exc
    try:
        # oslo.policy's own reader: YAML (of which JSON is a subset, so policy.json parses).
        parsed: Any = policy.parse_file_contents(data)
    except ValueError as exc:
        # PyYAML's message spans lines (what it expected, then where): one line for the log.
        why = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PolicyFileError(f"policy file {path}: not YAML or JSON "
                              f"({why[:300] or 'syntax error'})") from exc
    if not isinstance(parsed, dict):
        raise PolicyFileError(f"policy file {path}: must map rule names to check strings")
    rules: dict[str, str] = {}
    for name, check_str in parsed.items():
        if not isinstance(name, str) or not isinstance(check_str, str):
            raise PolicyFileError(f"policy file {path}: rule {name!r}: the rule name and its "
                                  f"check must be strings (quote them in YAML)")
        try:
            parse(name, check_str)
        except PolicyFileError as exc:
            raise PolicyFileError(f"policy file {path}: {exc}") from exc
        rules[name] = check_str
    return rules


# --- the overrides ------------------------------------------------------------------------

class PolicyFiles:
    """The operator's rules, as the domain's ``RuleOverrides``.

    Built once at start-up (``load``, which raises PolicyFileError for a file that cannot be
    used); afterwards a broken edit is logged and the rules in force stay.
    """

    def __init__(self, sources: PolicySources, reload_interval: float = 5.0,
                 defaults: Sequence[Rule] = RULES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sources = sources
        self._interval = reload_interval
        self._defaults = defaults
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = sources.signature()
        self._rules = self._compile()
        self._next_look = clock() + reload_interval

    @classmethod
    def load(cls, policy_file: Path | None, policy_dirs: Iterable[Path] = (),
             reload_interval: float = 5.0, announce: bool = True) -> PolicyFiles:
        files = cls(PolicySources(policy_file, tuple(policy_dirs)), reload_interval)
        if announce:
            files._announce(files._rules)
        return files

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def check(self, rule: str, principal: Principal, target: Mapping[str, Any]) -> bool | None:
        if self._interval > 0 and self._clock() >= self._next_look:
            self.reload_if_changed()
        rules = self._rules
        check = rules.answers.get(rule)
        if check is None:
            return None
        return evaluate(check, target, credentials(principal), rules.resolver, rule)

    def reload_if_changed(self) -> bool:
        """Read the files again if any changed; True when new rules took effect. One caller
        at a time looks; the others go on with the rules in force."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._next_look = self._clock() + self._interval
            signature = self._sources.signature()
            if signature == self._signature:
                return False
            self._signature = signature
            try:
                rules = self._compile()
            except PolicyFileError as exc:
                log.warning("policy files changed but cannot be used, the previous rules stay "
                            "in force: %s", exc)
                return False
            self._announce(rules)
            self._rules = rules
            log.info("policy files reloaded: %d rules from the files, %d evaluated from them",
                     len(rules.file_rules), len(rules.answers))
            return True
        finally:
            self._lock.release()

    def _compile(self) -> RuleSet:
        """The files read and merged over the defaults; PolicyFileError names the files."""
        file_rules = self._sources.read()
        try:
            return compile_rules(file_rules, self._defaults)
        except PolicyFileError as exc:
            raise PolicyFileError(f"policy files {self._sources}: {exc}") from exc

    @staticmethod
    def _announce(rules: RuleSet) -> None:
        for name in rules.unknown:
            log.warning("policy rule %r is not one of glimpse's rules and no rule refers to "
                        "it: it has no effect (a typo?)", name)
        if rules.redundant:
            log.info("policy rules the same as glimpse's defaults (they can be removed from "
                     "the files): %s", ", ".join(rules.redundant))
