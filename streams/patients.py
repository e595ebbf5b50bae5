"""Per-patient clinical settings from a JSON file (``BEDSIDE_STREAM__PATIENT_SETTINGS_FILE``).

    {"syn-p1": {"glucose_targets": {"urgent_low": 60, "low": 80, "high": 200,
                                    "urgent_high": 300},
                "spo2_scale": 2,
                "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/London"},
                "tz": "Europe/London", "ward": "4B"}}

Validated when the worker starts; a bad value stops it with the patient and field named.
Quiet hours hold back routine re-alerts only: never urgent kinds (urgent low, NEWS2 >= 7),
never escalations. ``tz`` (IANA) gives the glucose model the patient's own time of day
(UTC when nothing is known). ``ward`` says which users see the patient
(streams/access/users.py). Settings given here win over the environment's
``BEDSIDE_STREAM__GLUCOSE_TARGETS`` and ``BEDSIDE_STREAM__SPO2_SCALE2_PATIENTS``.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from .config_files import read_json_file
from .settings import GlucoseTargetSettings


def known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        msg = f"unknown time zone {value!r} (use an IANA name such as Europe/London)"
        raise ValueError(msg) from error
    return value


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_zone(value)

    def contains(self, t_ms: int) -> bool:
        local = datetime.fromtimestamp(t_ms / 1000, tz=UTC).astimezone(ZoneInfo(self.timezone))
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # across midnight


class PatientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    glucose_targets: GlucoseTargetSettings | None = None
    spo2_scale: int | None = Field(None, ge=1, le=2, description="NEWS2 SpO2 scale 1 or 2.")
    quiet_hours: QuietHours | None = None
    tz: str | None = Field(
        None, description="The patient's IANA time zone: the glucose model's time of day."
    )
    ward: str | None = Field(
        None,
        min_length=1,
        description="The patient's ward: who may see it (BEDSIDE_WEB__DEFAULT_WARD without).",
    )

    @field_validator("tz")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return value if value is None else known_zone(value)

    def utc_offset_minutes(self, t_ms: int) -> int:
        """The patient's offset from UTC at ``t_ms`` (0 without a zone)."""
        if self.tz is None:
            return 0
        moment = datetime.fromtimestamp(t_ms / 1000, tz=UTC).astimezone(ZoneInfo(self.tz))
        offset = moment.utcoffset()
        return int(offset.total_seconds() // 60) if offset else 0


SETTINGS_FILE = TypeAdapter(dict[str, PatientSettings])


class PatientSettingsError(ValueError):
    """The patient settings file cannot be used; the message says where and why."""


def load_patient_settings(path: Path | None) -> dict[str, PatientSettings]:
    if path is None:
        return {}
    return read_json_file(
        path, SETTINGS_FILE.validate_json, "patient settings file", PatientSettingsError
    )
