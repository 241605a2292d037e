"""glimpse's rules as oslo.policy's tools see them: the ``glimpse`` namespace.

``list_rules`` is the ``oslo.policy.policies`` entry point (``oslopolicy-sample-generator
--namespace glimpse``, ``oslopolicy-convert-json-to-yaml``); ``enforcer`` the
``oslo.policy.enforcer`` one (``oslopolicy-policy-generator``, ``oslopolicy-list-redundant``,
``oslopolicy-validator``), reading ``[oslo_policy] policy_file`` from the tool's
``--config-file``. glimpse itself never builds an Enforcer (glimpse.policy_files).
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_policy import policy

from glimpse.domain.policy import RULES, Rule

# Why Glance deprecated its Wallaby-era defaults (shown in the sample file).
_DEPRECATED_REASON = ("The image API's rules moved to Glance's secure-RBAC defaults (project "
                      "member and reader roles, admin across projects).")


def rule_default(rule: Rule) -> policy.RuleDefault:
    deprecated = None
    if rule.deprecated_check_str is not None:
        deprecated = policy.DeprecatedRule(
            rule.name, rule.deprecated_check_str, deprecated_reason=_DEPRECATED_REASON,
            deprecated_since="Wallaby")
    scope_types = list(rule.scope_types) or None
    if not rule.operations:
        # The base rules other rules refer to (context_is_admin, default, service_api) and
        # rules of APIs with no single request: Glance registers them undocumented.
        return policy.RuleDefault(rule.name, rule.check_str, description=rule.description,
                                  deprecated_rule=deprecated, scope_types=scope_types)
    return policy.DocumentedRuleDefault(
        rule.name, rule.check_str, rule.description,
        [{"method": method, "path": path} for method, path in rule.operations],
        deprecated_rule=deprecated, scope_types=scope_types,
    )


def list_rules() -> list[policy.RuleDefault]:
    return [rule_default(rule) for rule in RULES]


def enforcer() -> policy.Enforcer:
    """An Enforcer of glimpse's defaults and the files ``cfg.CONF`` names (the tools parse
    their command line into it before asking)."""
    found = policy.Enforcer(cfg.CONF)
    found.register_defaults(list_rules())
    return found
