"""The contracts of the topics other systems read or write, as JSON Schema (2020-12).

Generated from the models that validate the events (``streams.schemas.events``), build the
dead letters (``streams.ingest.problems``) and read care-team actions
(``streams.alerts.actions``), so a schema cannot drift from the code: ``bedside schemas``
writes them to ``docs/schemas/``; ``docs/schemas/v<MAJOR.MINOR>/`` keeps each published
version as it was, and a test fails on a change without a new version or, within a major
version, on one that is not additive.

Every output event carries ``schema_version`` ("MAJOR.MINOR"). Consumers should ignore fields
they do not know: new optional fields arrive within a major version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .alerts.actions import AlertAction
from .ingest.problems import DeadLetter
from .schemas.events import (
    ALERT_SCHEMA_VERSION,
    DEAD_LETTER_SCHEMA_VERSION,
    RISK_SCHEMA_VERSION,
    AlertEvent,
    RiskEvent,
)

_MAJOR_1 = r"^1\.\d+$"


class AlertEventContract(AlertEvent):
    """An alarm transition on ``bedside.alerts``: the audit trail. ``patient_id`` ``*`` with
    ``scope`` ``worker`` is the worker's own ``monitoring_degraded`` alarm."""

    schema_version: str = Field(pattern=_MAJOR_1)
    scope: str | None = Field(None, max_length=32, description="'worker' on monitoring events")
    worker: str | None = Field(None, max_length=200, description="which worker (monitoring)")


class RiskEventContract(RiskEvent):
    """One scoring of a patient on ``bedside.risk``: each score with its name and version."""

    schema_version: str = Field(pattern=_MAJOR_1)


#: file name -> (title, topic, the model, its version; None: an input, not versioned)
CONTRACTS: dict[str, tuple[str, str, type[BaseModel], str | None]] = {
    "alerts": ("Alert event", "bedside.alerts", AlertEventContract, ALERT_SCHEMA_VERSION),
    "risk": ("Risk event", "bedside.risk", RiskEventContract, RISK_SCHEMA_VERSION),
    "deadletter": ("Dead letter", "bedside.deadletter", DeadLetter, DEAD_LETTER_SCHEMA_VERSION),
    "alert-acks": ("Care-team action", "bedside.alert-acks", AlertAction, None),
}


def contract_schemas() -> dict[str, dict[str, Any]]:
    """Each topic's JSON Schema, by file stem."""
    found = {}
    for stem, (title, topic, model, version) in CONTRACTS.items():
        schema = model.model_json_schema(mode="serialization")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://bedside.invalid/schemas/{stem}.schema.json",
            **schema,
            "title": title,
            "x-topic": topic,
            **({"x-schema-version": version} if version else {}),
        }
        if version:  # always written, though the model has a default for it
            schema["required"] = sorted({*schema.get("required", ()), "schema_version"})
        found[stem] = schema
    return found


def write_schemas(folder: Path) -> list[Path]:
    """Write every contract to ``folder/<stem>.schema.json``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, schema in contract_schemas().items():
        path = folder / f"{stem}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
