"""quality_scale.yaml lists every Integration Quality Scale rule with an honest status.

hassfest checks this file for core integrations only, so this test does it for ours. The rule
list below is the official one (bronze → platinum) as of Home Assistant 2026.10.
"""

from __future__ import annotations

import yaml

from tests.helpers import CHECKOUT

QUALITY_SCALE = CHECKOUT / "custom_components" / "jeisson" / "quality_scale.yaml"

RULES = {
    "bronze": [
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow",
        "config-flow-test-coverage",
        "dependency-transparency",
        "docs-actions",
        "docs-conditions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "docs-triggers",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
    ],
    "silver": [
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
    ],
    "gold": [
        "devices",
        "diagnostics",
        "discovery",
        "discovery-update-info",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}
STATUSES = {"done", "todo", "exempt"}


def _rules() -> dict[str, object]:
    data = yaml.safe_load(QUALITY_SCALE.read_text(encoding="utf-8"))
    return dict(data["rules"])


def test_every_rule_is_listed_once_and_nothing_else() -> None:
    """The file names exactly the official rules."""
    expected = {rule for tier in RULES.values() for rule in tier}
    assert set(_rules()) == expected
    assert len(expected) == sum(len(tier) for tier in RULES.values())


def test_every_status_is_valid_and_exemptions_say_why() -> None:
    """Each rule is done, todo or exempt; exempt and todo carry a comment."""
    for rule, value in _rules().items():
        if isinstance(value, str):
            assert value == "done", f"{rule}: a bare status must be 'done'"
            continue
        assert isinstance(value, dict), rule
        assert value["status"] in STATUSES, rule
        if value["status"] != "done":
            assert str(value.get("comment", "")).strip(), f"{rule}: needs a comment"
