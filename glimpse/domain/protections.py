"""Property protections: who may create, read, update and delete which custom properties, as
an operator's file in Glance's format says (``property_protection_file``; see
docs/property-protections.md).

The file is INI. Each section header is a regular expression, searched for in a property's name
(``re.search``: unanchored unless the operator anchors it); the first section in file order
that matches decides, and a name that no section matches may be neither set nor seen by anyone.
A section gives each of ``create``, ``read``, ``update`` and ``delete`` a value which, by the
rule format (``property_protection_rule_format``), is

- ``roles``: roles separated by commas, any of which the caller (its roles or service roles)
  must hold, compared without regard to case;
- ``policies``: the name of one policy rule, evaluated for the caller with an empty target.

In both formats ``@`` is everyone and ``!`` no one; an empty value is no one too. Admins are not
exempt: as in Glance, the file grants them what it grants them.

These apply to custom properties only, never to the core attributes of an image.
"""

from __future__ import annotations

import configparser
import dataclasses
import enum
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from glimpse.domain.model import Image, Principal
from glimpse.errors import Invalid, PropertyProtected

log = logging.getLogger(__name__)

EVERYONE = "@"
NO_ONE = "!"
# How many property names' matching sections are remembered (names are at most 255
# characters; clients choose them, so the memory is bounded).
_MATCH_CACHE_SIZE = 8192


class Operation(enum.StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


class RuleFormat(enum.StrEnum):
    ROLES = "roles"
    POLICIES = "policies"


# Evaluates a named policy rule for a caller, with an empty target (the ``policies`` format).
PolicyCheck = Callable[[str, Principal], bool]


class Who(enum.Enum):
    EVERYONE = "everyone"
    NO_ONE = "no one"
    ROLES = "roles"  # any of ``roles``
    RULE = "rule"  # the policy rule ``rule`` allows


@dataclasses.dataclass(frozen=True)
class Grant:
    """Who may perform one operation on the properties of one section."""

    who: Who
    roles: frozenset[str] = frozenset()  # lower case
    rule: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    pattern: re.Pattern[str]
    grants: Mapping[Operation, Grant]
    # Operations given an empty value (allowed to no one): worth a warning, as in Glance.
    empty: tuple[Operation, ...] = ()


class ProtectionFileError(Invalid):
    """The file is unusable: glimpse refuses to start rather than protect less than the
    operator wrote."""


def load(path: Path, rule_format: RuleFormat) -> list[Section]:
    """The sections of the file at ``path``; ProtectionFileError naming the file and the
    problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ProtectionFileError(
            f"property_protection_file {path}: cannot be read: {reason}") from exc
    try:
        return parse(text, rule_format)
    except ProtectionFileError as exc:
        raise ProtectionFileError(f"property_protection_file {path}: {exc.message}") from exc


def parse(text: str, rule_format: RuleFormat) -> list[Section]:
    """The sections of a file's text, in file order.

    Stricter than Glance in three ways, each to refuse a file that would protect less than it
    seems to: a key other than the four operations is refused (Glance ignores it, so a
    misspelt ``raed`` would have been silently dropped had the operation also been given
    elsewhere); a file without any section is refused (Glance then protects nothing); and
    ``[DEFAULT]`` values, which Glance's parser would inherit into every section, are refused
    too (nobody writes one on purpose in a file whose headers are patterns).
    """
    # Glance's parser: ``=`` or ``:``, ``#`` and ``;`` comments, duplicate sections or keys
    # refused, keys compared without case. No interpolation: a ``%`` is just a character.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ProtectionFileError(f"not a valid INI file: {_first_line(exc)}") from exc
    if parser.defaults():
        raise ProtectionFileError(
            "a [DEFAULT] section is not allowed: every section must give its own create, "
            "read, update and delete")
    headers = parser.sections()
    if not headers:
        raise ProtectionFileError(
            "no sections: a protection file must protect something (unset "
            "property_protection_file to protect nothing)")
    return [_section(header, parser[header], rule_format) for header in headers]


def _section(header: str, values: Mapping[str, str], rule_format: RuleFormat) -> Section:
    try:
        pattern = re.compile(header)
    except re.error as exc:
        raise ProtectionFileError(
            f"section [{header}] is not a valid regular expression: {exc}") from exc
    known = {str(op) for op in Operation}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ProtectionFileError(
            f"section [{header}]: unknown operation {', '.join(unknown)} (the operations are "
            "create, read, update and delete)")
    missing = [str(op) for op in Operation if op not in values]
    if missing:
        raise ProtectionFileError(
            f"section [{header}] does not give {', '.join(missing)} (each section must give "
            "create, read, update and delete; an empty value allows no one)")
    grants = {op: _grant(header, op, values[op], rule_format) for op in Operation}
    return Section(pattern, grants, tuple(op for op in Operation if not values[op].strip()))


def _grant(header: str, op: Operation, value: str, rule_format: RuleFormat) -> Grant:
    where = f"section [{header}] {op} = {value}"
    if rule_format is RuleFormat.POLICIES:
        if "," in value:
            raise ProtectionFileError(
                f"{where}: one policy rule per operation (combine rules in the policy file)")
        entries = [value.strip()] if value.strip() else []
    else:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if EVERYONE in entries and NO_ONE in entries:
        raise ProtectionFileError(f"{where}: '@' and '!' are mutually exclusive")
    if not entries or NO_ONE in entries:
        return Grant(Who.NO_ONE)
    if EVERYONE in entries:
        return Grant(Who.EVERYONE)
    if rule_format is RuleFormat.POLICIES:
        return Grant(Who.RULE, rule=entries[0])
    return Grant(Who.ROLES, roles=frozenset(entry.lower() for entry in entries))


def warn(sections: Iterable[Section]) -> None:
    """Log what is allowed but probably not meant: operations given an empty value."""
    for section in sections:
        for op in section.empty:
            log.warning("property protections: [%s] %s is empty, which allows no one",
                        section.pattern.pattern, op)


def rule_names(sections: Iterable[Section]) -> set[str]:
    """The policy rules a file in the ``policies`` format names."""
    return {grant.rule for section in sections for grant in section.grants.values()
            if grant.who is Who.RULE}


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class PropertyRules:
    """The protections in force: which section governs a name, and whether it grants an
    operation to a caller."""

    def __init__(self, sections: Sequence[Section], rule_format: RuleFormat,
                 policy: PolicyCheck | None = None) -> None:
        if not sections:
            raise ValueError("no sections")
        if rule_format is RuleFormat.POLICIES and policy is None:
            raise ValueError("the policies format needs a policy check")
        self._sections = tuple(sections)
        self._policy = policy
        self._matches: dict[str, int] = {}

    def section_of(self, name: str) -> int:
        """The index of the first section whose pattern is found in ``name``; -1 for none."""
        index = self._matches.get(name)
        if index is None:
            index = next((i for i, s in enumerate(self._sections) if s.pattern.search(name)),
                         -1)
            if len(self._matches) >= _MATCH_CACHE_SIZE:
                self._matches.clear()
            self._matches[name] = index
        return index

    def grants(self, section: int, op: Operation, principal: Principal) -> bool:
        if section < 0:
            return False
        grant = self._sections[section].grants[op]
        if grant.who is Who.EVERYONE:
            return True
        if grant.who is Who.ROLES:
            return not grant.roles.isdisjoint(principal.roles) or not grant.roles.isdisjoint(
                principal.service_roles)
        if grant.who is Who.RULE and self._policy is not None:
            return self._policy(grant.rule, principal)
        return False

    def for_caller(self, principal: Principal) -> CallerAccess:
        return CallerAccess(self, principal)


class CallerAccess:
    """One caller's access to properties, for one request: each (section, operation) is
    decided once, however many images and properties the request touches."""

    def __init__(self, rules: PropertyRules, principal: Principal) -> None:
        self._rules = rules
        self._principal = principal
        self._decided: dict[tuple[int, Operation], bool] = {}

    def may(self, name: str, op: Operation) -> bool:
        key = (self._rules.section_of(name), op)
        allowed = self._decided.get(key)
        if allowed is None:
            allowed = self._decided[key] = self._rules.grants(key[0], op, self._principal)
        return allowed

    def require(self, name: str, op: Operation) -> None:
        if not self.may(name, op):
            raise PropertyProtected(name)

    def hidden(self, names: Iterable[str]) -> frozenset[str]:
        """The names among ``names`` this caller may not read."""
        return frozenset(name for name in names if not self.may(name, Operation.READ))

    def shown(self, image: Image) -> Image:
        """The image as this caller may see it: without the properties it may not read (the
        same object when there are none)."""
        hidden = self.hidden(image.properties)
        if not hidden:
            return image
        properties = {k: v for k, v in image.properties.items() if k not in hidden}
        return dataclasses.replace(image, properties=properties)

    def check_create(self, names: Iterable[str]) -> None:
        for name in names:
            self.require(name, Operation.CREATE)

    def check_set(self, values: Mapping[str, str | None], current: Mapping[str, str | None],
                  hidden: frozenset[str]) -> None:
        """Setting ``values`` on properties ``current`` (the image's, with the request's
        earlier changes), of which ``hidden`` exist but are unreadable to the caller.

        A new property needs create. An existing one needs read, and update unless its value
        stays the same (Glance v1's rule: a client that resends what it read changes
        nothing; asking read first means a value cannot be found by guessing). Setting a
        property one may not read is refused whatever its value."""
        for name, value in values.items():
            if name in hidden:
                raise PropertyProtected(name)
            if name not in current:
                self.require(name, Operation.CREATE)
            elif current[name] != value:
                self.require(name, Operation.UPDATE)
