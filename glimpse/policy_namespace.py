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

# Glance's rules are all for project-scoped tokens; glimpse enforces that scope itself.
SCOPE_TYPES = ["project"]


def rule_default(rule: Rule) -> policy.RuleDefault:
    if not rule.operations:
        # The base rules other rules refer to (context_is_admin, default, service_api):
        # Glance registers them undocumented and unscoped.
        return policy.RuleDefault(rule.name, rule.check_str, description=rule.description)
    return policy.DocumentedRuleDefault(
        rule.name, rule.check_str, rule.description,
        [{"method": method, "path": path} for method, path in rule.operations],
        scope_types=list(SCOPE_TYPES),
    )


def list_rules() -> list[policy.RuleDefault]:
    return [rule_default(rule) for rule in RULES]


def enforcer() -> policy.Enforcer:
    """An Enforcer of glimpse's defaults and the files ``cfg.CONF`` names (the tools parse
    their command line into it before asking)."""
    found = policy.Enforcer(cfg.CONF)
    found.register_defaults(list_rules())
    return found
