"""Validate TES responses against the official OpenAPI document, strictly.

tests/specs/tes-1.1.0.openapi.yaml is GA4GH's TES 1.1.0 document (Apache 2.0), as
published. Its service-info schema refers to GA4GH's service-info 1.0.0 document on
the network; the two schemas it uses from there are written out below. Every object
schema is made closed (no properties beyond those it defines), so a response with
an extra field fails, as it would in a strict client.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

SPEC = yaml.safe_load((Path(__file__).parent.parent / "specs" /
                       "tes-1.1.0.openapi.yaml").read_text())

# GA4GH service-info 1.0.0: Service and ServiceType.
_SERVICE_TYPE = {
    "type": "object", "required": ["group", "artifact", "version"],
    "properties": {"group": {"type": "string"}, "artifact": {"type": "string"},
                   "version": {"type": "string"}},
}
_SERVICE = {
    "type": "object", "required": ["id", "name", "type", "organization", "version"],
    "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "type": _SERVICE_TYPE,
        "description": {"type": "string"},
        "organization": {"type": "object", "required": ["name", "url"],
                         "properties": {"name": {"type": "string"},
                                        "url": {"type": "string"}}},
        "contactUrl": {"type": "string"}, "documentationUrl": {"type": "string"},
        "createdAt": {"type": "string"}, "updatedAt": {"type": "string"},
        "environment": {"type": "string"}, "version": {"type": "string"},
    },
}


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_closed(v) for v in schema]
    return schema


def _components() -> dict[str, Any]:
    schemas = copy.deepcopy(SPEC["components"]["schemas"])
    tes_part = schemas["tesServiceInfo"]["allOf"][1]
    service = copy.deepcopy(_SERVICE)
    service["properties"].update(tes_part["properties"])
    service["properties"]["type"] = {
        **_SERVICE_TYPE,
        "properties": {**_SERVICE_TYPE["properties"],
                       "artifact": {"type": "string", "enum": ["tes"]}}}
    schemas["tesServiceInfo"] = service
    schemas.pop("tesServiceType")
    return _closed(schemas)  # type: ignore[no-any-return]


_COMPONENTS = _components()
# The MINIMAL view holds only id and state, by the spec's own definition of the view,
# although tesTask requires executors: that one requirement is lifted for it.
_MINIMAL = copy.deepcopy(_COMPONENTS)
_MINIMAL["tesTask"].pop("required")


def validate(document: Any, schema_name: str, *, minimal: bool = False) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is a valid ``schema_name``
    (in the MINIMAL view if ``minimal``)."""
    Draft7Validator({"$ref": f"#/components/schemas/{schema_name}",
                     "components": {"schemas": _MINIMAL if minimal else _COMPONENTS}},
                    ).validate(document)
