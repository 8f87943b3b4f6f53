"""JSON Schema validation of event details, on publish and on consume.

Each detail-type has `schemas/<name>.v<N>.json` describing `data`; `metadata.v1.json` describes the
metadata block every detail carries. Consumers accept every schema version that has a file, so a
breaking change ships as a new file beside the old one.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .event_types import EventType

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
CURRENT_SCHEMA_VERSION = 1


class SchemaViolation(ValueError):
    """An event detail that does not match its schema. The message lists every violation."""


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text())


def _is_email(value: str) -> bool:
    # Django's validator, the one the API and the admin apply to the address in the first place:
    # jsonschema-rs's own refuses internationalised domains (kunde@exämple.de) that Django accepts.
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def _compile(name: str) -> jsonschema_rs.Validator:
    # Formats (uuid, date-time, email) are checked, not just annotated; an invalid schema raises here.
    return jsonschema_rs.validator_for(_load(name), validate_formats=True, formats={"email": _is_email})


@cache
def _metadata_validator() -> jsonschema_rs.Validator:
    return _compile("metadata.v1.json")


@cache
def _data_validator(schema_name: str, version: int) -> jsonschema_rs.Validator | None:
    path = SCHEMA_DIR / f"{schema_name}.v{version}.json"
    if not path.exists():
        return None
    return _compile(path.name)


def supported_versions(event_type: EventType) -> list[int]:
    return sorted(int(path.suffixes[0][2:]) for path in SCHEMA_DIR.glob(f"{event_type.schema_name}.v*.json"))


def _problems(validator: jsonschema_rs.Validator, instance: Any) -> list[str]:
    # is_valid is the fast path every good event takes; only a bad one pays for the explanations.
    try:
        if validator.is_valid(instance):
            return []
    except ValueError as exc:  # a value JSON cannot carry (a UUID or datetime object, not its string)
        return [f"<root>: not JSON data: {exc}"]
    # Messages quote the offending value; keep a huge one from flooding logs and DLQ reasons.
    return [
        f"{'.'.join(str(p) for p in error.instance_path) or '<root>'}: {error.message[:200]}"
        for error in validator.iter_errors(instance)
    ]


def validate_detail(event_type: EventType, detail: Any) -> None:
    """Raise SchemaViolation unless `detail` is a valid {"metadata", "data"} block for `event_type`."""
    if not isinstance(detail, dict) or not {"metadata", "data"} <= detail.keys():
        raise SchemaViolation(f"{event_type}: detail must be an object with 'metadata' and 'data'")
    problems = [f"metadata.{p}" for p in _problems(_metadata_validator(), detail["metadata"])]
    if problems:
        raise SchemaViolation(f"{event_type}: " + "; ".join(problems))
    version = detail["metadata"]["schemaVersion"]
    validator = _data_validator(event_type.schema_name, version)
    if validator is None:
        raise SchemaViolation(f"{event_type}: schemaVersion {version} is not supported")
    problems = [f"data.{p}" for p in _problems(validator, detail["data"])]
    if problems:
        raise SchemaViolation(f"{event_type}: " + "; ".join(problems))
