"""Translations (en, es) cover every key the code uses, and both languages have the same keys."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.helpers import CHECKOUT

INTEGRATION = CHECKOUT / "custom_components" / "jeisson"
LANGUAGES = ("en", "es")


def _load(language: str) -> dict[str, Any]:
    return json.loads((INTEGRATION / "translations" / f"{language}.json").read_text("utf-8"))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _source() -> str:
    return "\n".join(path.read_text("utf-8") for path in sorted(INTEGRATION.glob("*.py")))


def test_languages_have_the_same_keys_and_placeholders() -> None:
    """Spanish translates everything English has, with the same {placeholders}."""
    english, spanish = (_flatten(_load(language)) for language in LANGUAGES)
    assert set(english) == set(spanish)
    for key, text in english.items():
        assert set(re.findall(r"{\w+}", text)) == set(re.findall(r"{\w+}", spanish[key])), key


def test_every_translation_key_in_the_code_is_translated() -> None:
    """Exceptions, entities, issues and selectors named in code exist in en.json."""
    strings = _load("en")
    known = (
        set(strings["exceptions"])
        | set(strings["issues"])
        | set(strings["selector"])
        | {key for platform in strings["entity"].values() for key in platform}
    )
    used = set(re.findall(r'translation_key="(\w+)"', _source()))
    assert used
    assert used <= known, used - known


def test_every_flow_error_and_abort_is_translated() -> None:
    """Config and options flow errors/aborts used in code have texts."""
    strings = _load("en")
    source = _source()
    errors = set(re.findall(r'errors\[[^\]]+\] = "(\w+)"', source))
    assert errors <= set(strings["config"]["error"]) | set(strings["options"]["error"])
    aborts = set(re.findall(r'reason="(\w+)"', source))
    assert aborts <= set(strings["config"]["abort"])


def test_services_and_icons_match_the_translations() -> None:
    """Each service field has a name and description; icons point at translated entities."""
    strings = _load("en")
    services = yaml.safe_load((INTEGRATION / "services.yaml").read_text("utf-8"))
    for service, spec in services.items():
        translated = strings["services"][service]
        assert translated["name"]
        assert set(spec["fields"]) == set(translated["fields"]), service
    icons = json.loads((INTEGRATION / "icons.json").read_text("utf-8"))
    for platform, entities in icons["entity"].items():
        assert set(entities) <= set(strings["entity"][platform]), platform
    assert set(icons["services"]) == set(services)
