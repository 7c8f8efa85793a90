"""Validating a conformance report against the published schema (docs/conformance-schema.json)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "conformance-schema.json").read_text())


def errors(report: dict) -> list[str]:
    """Every schema violation of ``report`` as "json/path: message" (empty when valid)."""
    checker = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in checker.iter_errors(report)]
