"""Validation of OpenADR objects against the official OpenADR 3.1.0 OpenAPI document.

The document (``spec/openadr3-3.1.0.yaml``, the OpenADR Alliance's, Apache-2.0) is shipped as
data and its component schemas are used as JSON Schema (``jsonschema``): what Jeisson accepts and
sends is what the specification says, not a second, hand-written copy of it. OpenAPI 3.0's
``nullable`` is turned into JSON Schema's ``null`` type; everything else is used as written.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Final

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SPEC_FILE: Final = "openadr3-3.1.0.yaml"
_URI: Final = "urn:openadr3:3.1.0"
MAX_REASONS: Final = 5


class SchemaError(ValueError):
    """An object does not match its OpenADR schema."""


@cache
def spec_document() -> dict[str, Any]:
    """Return the OpenADR 3.1.0 OpenAPI document as loaded from the package."""
    text = resources.files("aggregator.openadr").joinpath("spec", SPEC_FILE).read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def _json_schema(node: Any) -> Any:
    """Return an OpenAPI 3.0 schema node as JSON Schema (``nullable`` becomes a null type)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
        elif "type" not in converted:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def _registry() -> Registry[Any]:
    document = {"components": _json_schema(spec_document()["components"])}
    registry: Registry[Any] = Registry().with_resource(
        _URI, Resource.from_contents(document, DRAFT7)
    )
    return registry


@cache
def _validator(component: str) -> Draft7Validator:
    if component not in spec_document()["components"]["schemas"]:
        raise KeyError(f"the OpenADR document has no schema {component!r}")
    schema = {"$ref": f"{_URI}#/components/schemas/{component}"}
    return Draft7Validator(schema, registry=_registry())


def schema_errors(component: str, value: Any) -> list[str]:
    """Return why ``value`` does not match the component schema (empty when it does)."""
    errors = sorted(_validator(component).iter_errors(value), key=lambda e: list(e.path))
    return [_describe(error) for error in errors[:MAX_REASONS]]


def check(component: str, value: Any) -> None:
    """Raise :class:`SchemaError` when ``value`` does not match the component schema."""
    reasons = schema_errors(component, value)
    if reasons:
        raise SchemaError(f"not a valid {component}: " + "; ".join(reasons))


def _describe(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "body"
    return f"{where}: {error.message[:200]}"
