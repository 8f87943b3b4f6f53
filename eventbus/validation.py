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

from jsonschema import Draft202012Validator, FormatChecker

from .event_types import EventType

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
CURRENT_SCHEMA_VERSION = 1


class SchemaViolation(ValueError):
    """An event detail that does not match its schema. The message lists every violation."""


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text())


@cache
def _metadata_validator() -> Draft202012Validator:
    return Draft202012Validator(_load("metadata.v1.json"), format_checker=FormatChecker())


@cache
def _data_validator(schema_name: str, version: int) -> Draft202012Validator | None:
    path = SCHEMA_DIR / f"{schema_name}.v{version}.json"
    if not path.exists():
        return None
    return Draft202012Validator(_load(path.name), format_checker=FormatChecker())


def supported_versions(event_type: EventType) -> list[int]:
    return sorted(int(path.suffixes[0][2:]) for path in SCHEMA_DIR.glob(f"{event_type.schema_name}.v*.json"))


def _describe(errors) -> list[str]:
    # Messages quote the offending value; keep a huge one from flooding logs and DLQ reasons.
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:200]}" for error in errors]


def validate_detail(event_type: EventType, detail: Any) -> None:
    """Raise SchemaViolation unless `detail` is a valid {"metadata", "data"} block for `event_type`."""
    if not isinstance(detail, dict) or not {"metadata", "data"} <= detail.keys():
        raise SchemaViolation(f"{event_type}: detail must be an object with 'metadata' and 'data'")
    problems = [f"metadata.{p}" for p in _describe(_metadata_validator().iter_errors(detail["metadata"]))]
    if problems:
        raise SchemaViolation(f"{event_type}: " + "; ".join(problems))
    version = detail["metadata"]["schemaVersion"]
    validator = _data_validator(event_type.schema_name, version)
    if validator is None:
        raise SchemaViolation(f"{event_type}: schemaVersion {version} is not supported")
    problems = [f"data.{p}" for p in _describe(validator.iter_errors(detail["data"]))]
    if problems:
        raise SchemaViolation(f"{event_type}: " + "; ".join(problems))
