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

:class:`PatientDirectory` is the one place that turns a sender's patient id into the id
windows are keyed by (normalised, then pseudonymised when ``BEDSIDE_PRIVACY__PSEUDONYMISE``
is on) and that answers every per-patient setting by that id: the pipeline, the ingest
gateway and the pages all ask it, so no setting can stay keyed by a clear id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from .access.pseudonyms import Pseudonyms
from .config_files import read_json_file
from .schemas.observation import Observation
from .settings import GlucoseTargetSettings, StreamSettings


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


def normalise_id(patient_id: str) -> str:
    """One spelling per patient: Unicode NFKC, invisible format characters removed, outer
    white space stripped, inner runs of white space made one space, letters lower-case.
    ``p-700``, ``P-700 `` and ``p-700\u200b`` are one patient, not three with default
    thresholds each."""
    text = unicodedata.normalize("NFKC", patient_id)
    if not text.isascii() or text != text.strip():
        text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Cc", "Co"))
    # an id of nothing but invisible characters stays as sent: distinct, never empty
    return " ".join(text.split()).lower() or patient_id


class PatientDirectory:
    """Patient ids as windows are keyed, and each patient's own settings under that id.

    Sources of settings, merged once at start: the patient settings file (wins), then
    ``BEDSIDE_STREAM__GLUCOSE_TARGETS`` and ``BEDSIDE_STREAM__SPO2_SCALE2_PATIENTS``. Every
    source names patients by the sender's id; each is keyed here through :meth:`key`."""

    def __init__(
        self,
        patients: Mapping[str, PatientSettings] | None = None,
        pseudonyms: Pseudonyms | None = None,
    ) -> None:
        self.pseudonyms = pseudonyms
        self.settings: dict[str, PatientSettings] = {}
        for clear, own in (patients or {}).items():
            key = self.key(clear, pinned=True)
            if key in self.settings and self.settings[key] != own:
                msg = f"patient settings name {clear!r} twice (as another spelling of one id)"
                raise PatientSettingsError(msg)
            self.settings[key] = own

    @classmethod
    def from_settings(
        cls, stream: StreamSettings, pseudonyms: Pseudonyms | None = None
    ) -> PatientDirectory:
        """Every source of per-patient settings in ``stream`` (the file is read here),
        merged per patient however each source spells the id."""
        merged: dict[str, tuple[str, PatientSettings]] = {}  # one spelling -> (as written, ...)

        def merge(clear: str, update: dict[str, object]) -> None:
            spelled, base = merged.get(normalise_id(clear), (clear, PatientSettings()))
            merged[normalise_id(clear)] = (spelled, base.model_copy(update=update))

        for clear, targets in stream.glucose_targets.items():
            merge(clear, {"glucose_targets": targets})
        for clear in stream.spo2_scale2_patients:
            merge(clear, {"spo2_scale": 2})
        for clear, own in load_patient_settings(stream.patient_settings_file).items():
            # the file's fields win; the environment fills what the file leaves out
            given = own.model_dump(exclude_unset=True, exclude_none=True)
            merge(clear, {field: getattr(own, field) for field in given})
        return cls(dict(merged.values()), pseudonyms)

    def key(self, patient_id: str, *, pinned: bool = False) -> str:
        """The id a sender's ``patient_id`` is keyed, stored and published by."""
        if self.pseudonyms is None:
            return normalise_id(patient_id)
        if Pseudonyms.is_pseudonym(patient_id):
            return patient_id  # re-keyed to its partition already
        return self.pseudonyms.of(normalise_id(patient_id), shown=patient_id, pinned=pinned)

    def observations(self, observations: list[Observation]) -> list[Observation]:
        """The observations keyed as windows are (ids normalised; pseudonymised)."""
        if self.pseudonyms is not None:
            return self.pseudonyms.observations(observations, self.key)
        if all(o.patient_id == normalise_id(o.patient_id) for o in observations):
            return observations  # the common case: senders already write one spelling
        return [
            o.model_copy(update={"patient_id": normalise_id(o.patient_id)}) for o in observations
        ]

    def own(self, patient_id: str) -> PatientSettings | None:
        """The patient's own settings (``patient_id`` as keyed); None for most patients."""
        return self.settings.get(patient_id)

    def wards(self) -> dict[str, str]:
        """Keyed id -> ward, for the patients whose settings name one."""
        return {pid: own.ward for pid, own in self.settings.items() if own.ward}

    def display(self, patient_id: str) -> str | None:
        """The sender's id of a pseudonymised patient this worker has seen."""
        return self.pseudonyms.display(patient_id) if self.pseudonyms is not None else None
