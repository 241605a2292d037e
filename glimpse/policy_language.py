"""oslo.policy's language as glimpse uses it for operators' rules: parsing check strings
(refusing what oslo.policy would only log), merging the files' rules over the defaults as
oslo.policy's ``load_rules`` does, and evaluating the parsed check trees directly, with the
credentials oslo.context's ``to_policy_values`` gives a caller.

Where the rules come from and when they are read again is glimpse.policy_files.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from oslo_policy import _checks, _parser, policy

from glimpse.domain.model import Principal
from glimpse.domain.policy import RULES, Rule
from glimpse.errors import Invalid

if TYPE_CHECKING:
    from oslo_policy.policy import Enforcer

# oslo.policy's name for the rule that an undefined ``rule:`` reference falls back to (its
# ``policy_default_rule`` option, which Glance leaves at this value).
DEFAULT_RULE = "default"
# The check kinds an operator may use: oslo.policy's built-ins, which only read the credentials
# and the target. ``http:``/``https:`` checks (and plug-in kinds) would call out over the
# network inside a request; they are refused (docs/identity.md).
_ALLOWED_CHECKS = (_checks.TrueCheck, _checks.FalseCheck, _checks.AndCheck, _checks.OrCheck,
                   _checks.NotCheck, _checks.RuleCheck, _checks.RoleCheck,
                   _checks.GenericCheck)


class PolicyFileError(Invalid):
    """A policy file that cannot be used: unreadable, not YAML, or a rule that does not parse."""


def credentials(principal: Principal) -> dict[str, Any]:
    """The caller as oslo.context's ``RequestContext.to_policy_values()`` shows it to rules
    (plus ``system``, which ``Enforcer.enforce`` copies from ``system_scope``). ``project_id``
    is the caller's owner, the id images are owned by, as the built-in predicates read it: its
    project (its user id only in noauth mode with ``owner_is_tenant = false``)."""
    creds: dict[str, Any] = {
        "user_id": principal.user,
        "user_domain_id": principal.user_domain_id,
        "system_scope": principal.system_scope,
        "domain_id": principal.domain_id,
        "project_id": principal.owner,
        "project_domain_id": principal.project_domain_id,
        "roles": list(principal.roles),
        "is_admin_project": principal.is_admin_project,
        "service_user_id": principal.service_user,
        "service_user_domain_id": None,
        "service_project_id": principal.service_project,
        "service_project_domain_id": None,
        "service_roles": list(principal.service_roles),
    }
    if principal.system_scope:
        creds["system"] = principal.system_scope
    return creds

# --- parsing ------------------------------------------------------------------------------

class _ParseErrors(logging.Handler):
    """oslo.policy's parser does not raise: it logs (with a traceback) and turns whatever it
    does not understand into a check that always fails. The log records are how a broken
    rule is told from a deliberate ``!``."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_parser_lock = threading.Lock()


@contextmanager
def _parse_errors() -> Iterator[_ParseErrors]:
    logger = logging.getLogger(_parser.__name__)
    handler = _ParseErrors()
    with _parser_lock:
        propagate = logger.propagate
        logger.addHandler(handler)
        logger.propagate = False
        try:
            yield handler
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate


def parse(name: str, check_str: str) -> _checks.BaseCheck:
    """One rule's check string as oslo.policy's tree; PolicyFileError when oslo.policy does
    not understand it, or it uses a check kind glimpse refuses."""
    with _parse_errors() as errors:
        check = _parser.parse_rule(check_str)
    if errors.messages:
        raise PolicyFileError(f"rule {name!r}: cannot parse {check_str!r} "
                              f"({errors.messages[0]})")
    for node in _walk(check):
        if not isinstance(node, _ALLOWED_CHECKS):
            raise PolicyFileError(f"rule {name!r}: the check {node} is not supported (glimpse "
                                  f"evaluates role:, rule:, and attribute checks; http: and "
                                  f"plug-in checks are refused)")
    return check


def _walk(check: _checks.BaseCheck) -> Iterator[_checks.BaseCheck]:
    yield check
    if isinstance(check, _checks.NotCheck):
        yield from _walk(check.rule)
    for child in getattr(check, "rules", ()):
        yield from _walk(child)


def _references(check: _checks.BaseCheck) -> Iterator[str]:
    for node in _walk(check):
        if isinstance(node, _checks.RuleCheck):
            yield node.match

# --- the rules in force -------------------------------------------------------------------

class _Resolver:
    """What oslo.policy's ``RuleCheck`` needs of an Enforcer: its ``rules``."""

    def __init__(self, rules: policy.Rules) -> None:
        self.rules = rules


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """The rules in force after merging the files over the defaults.

    ``answers`` holds the rules glimpse evaluates from the files: those the files change
    (directly or under a deprecated name) and those the files add. Every other rule keeps its
    built-in predicate, which reaches an overridden ``context_is_admin``, ``service_api``,
    ``default`` or ``metadef_admin`` through the Policy (glimpse.domain.policy), so a default
    that names a changed rule need not be evaluated here: overriding ``context_is_admin``
    alone costs one evaluation per request, not one per rule and listed image.
    """

    answers: Mapping[str, _checks.BaseCheck]
    resolver: _Resolver
    file_rules: Mapping[str, str]
    unknown: tuple[str, ...] = ()  # named nowhere: neither glimpse's rules nor referenced
    redundant: tuple[str, ...] = ()  # the same as the default


def compile_rules(file_rules: Mapping[str, str], defaults: Sequence[Rule] = RULES) -> RuleSet:
    """Merge the files' rules over the defaults as oslo.policy's ``load_rules`` does (with
    ``enforce_new_defaults``, the only mode glimpse has) and find the rules the files change.
    PolicyFileError for a rule that does not parse or rules that refer to each other in a
    cycle."""
    parsed = {name: parse(name, check_str) for name, check_str in file_rules.items()}
    default_checks = {rule.name: _parser.parse_rule(rule.check_str) for rule in defaults}
    effective: dict[str, _checks.BaseCheck] = {**default_checks, **parsed}
    changed = {name for name, check in parsed.items()
               if name not in default_checks or str(check) != str(default_checks[name])}
    renamed = {old: rule for rule in defaults for old in rule.deprecated_names
               if old != rule.name}
    for old, rule in renamed.items():
        if old in parsed and _stands_for(rule, parsed[old], parsed):
            effective[rule.name] = parsed[old]
            changed.add(rule.name)
    _refuse_cycles(effective)
    referenced = {ref for check in effective.values() for ref in _references(check)}
    known = set(default_checks) | set(renamed)
    return RuleSet(
        answers={name: effective[name] for name in sorted(changed)},
        resolver=_Resolver(policy.Rules(effective, DEFAULT_RULE)),
        file_rules=dict(file_rules),
        unknown=tuple(sorted(n for n in parsed if n not in known and n not in referenced)),
        redundant=tuple(sorted(n for n in parsed if n in default_checks and n not in changed)),
    )


def _stands_for(rule: Rule, check: _checks.BaseCheck,
                parsed: Mapping[str, _checks.BaseCheck]) -> bool:
    """Whether a file rule under one of ``rule``'s deprecated names overrides ``rule``
    (oslo.policy's ``_handle_deprecated_rule``): unless the file names the new rule too, or
    the old name keeps its deprecated default, or merely points at the new name."""
    if rule.name in parsed or str(check) == f"rule:{rule.name}":
        return False
    deprecated = rule.deprecated_check_str
    return deprecated is None or str(check) != str(_parser.parse_rule(deprecated))


def _target_of(name: str, effective: Mapping[str, _checks.BaseCheck]) -> str:
    """The rule a ``rule:name`` reference evaluates: an undefined name falls back to the
    ``default`` rule (oslo.policy's ``Rules.__missing__``)."""
    return name if name in effective else DEFAULT_RULE


def _refuse_cycles(effective: Mapping[str, _checks.BaseCheck]) -> None:
    """``a: rule:b`` and ``b: rule:a`` would recurse without end at the first request."""
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name):], name))
            raise PolicyFileError(f"rules refer to each other in a cycle: {cycle}")
        if name in done or name not in effective:
            return
        for ref in _references(effective[name]):
            # An undefined name is the default rule: ``default: rule:nothing`` is a cycle.
            visit(_target_of(ref, effective), (*path, name))
        done.add(name)

    for name in effective:
        visit(name, ())


def evaluate(check: _checks.BaseCheck, target: Mapping[str, Any], creds: dict[str, Any],
             resolver: _Resolver, rule: str) -> bool:
    """oslo.policy's evaluation of a check tree: ``and``/``or``/``not``/``rule:`` walked here
    as its composite checks walk them, each leaf check (``role:``, attribute, ``@``, ``!``)
    called directly. oslo.policy's own walk inspects every node's signature on every call
    (``_checks._check``), which costs four times the evaluation."""
    if isinstance(check, _checks.AndCheck):
        return all(evaluate(c, target, creds, resolver, rule) for c in check.rules)
    if isinstance(check, _checks.OrCheck):
        return any(evaluate(c, target, creds, resolver, rule) for c in check.rules)
    if isinstance(check, _checks.NotCheck):
        return not evaluate(check.rule, target, creds, resolver, rule)
    if isinstance(check, _checks.RuleCheck):
        try:
            # An undefined name finds the ``default`` rule (Rules.__missing__); with no
            # ``default`` either, the check fails closed, as oslo.policy's does.
            referenced = resolver.rules[check.match]
        except KeyError:
            return False
        return referenced is not None and evaluate(referenced, target, creds, resolver, rule)
    # The resolver stands in for the Enforcer: leaf checks do not read it.
    return bool(check(target, creds, cast("Enforcer", resolver), rule))
