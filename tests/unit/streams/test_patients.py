"""Per-patient settings from a file: validation, precedence, quiet hours."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from fakes import apply

from streams.cli import main
from streams.ingest.decode import decode_record
from streams.patients import PatientSettingsError, QuietHours, load_patient_settings
from streams.processing import codec
from streams.processing.pipeline import PatientPipeline
from streams.schemas.observation import Kind
from streams.scoring.service import ModelScoring
from streams.settings import ScoringSettings, StreamSettings
from streams.windows.patient import CGM_CODE, PatientWindow


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "patients.json"
    path.write_text(json.dumps(data))
    return path


def test_file_settings_win_and_quiet_hours_apply(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "p1": {
                "glucose_targets": {"urgent_low": 60, "low": 80, "high": 200, "urgent_high": 300},
                "spo2_scale": 2,
                "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/London"},
            }
        },
    )
    settings = StreamSettings(
        patient_settings_file=path,
        spo2_scale2_patients=[],
        glucose_targets={"p1": {"low": 75, "urgent_low": 55}},
    )
    profile = PatientPipeline(settings).profile("p1")
    assert profile.glucose.low == 80 and profile.spo2_scale == 2
    night = int(datetime(2026, 1, 15, 23, 30, tzinfo=UTC).timestamp() * 1000)
    day = int(datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp() * 1000)
    assert profile.is_quiet(night) and not profile.is_quiet(day)
    assert not PatientPipeline(settings).profile("p2").is_quiet(night)


def test_quiet_hours_in_the_patients_time_zone() -> None:
    hours = QuietHours(start="22:00", end="07:00", timezone="Asia/Tokyo")
    # 14:00 UTC is 23:00 in Tokyo
    assert hours.contains(int(datetime(2026, 1, 15, 14, 0, tzinfo=UTC).timestamp() * 1000))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"p1": {"glucose_targets": {"low": 40}}}, "p1.glucose_targets"),
        ({"p1": {"spo2_scale": 3}}, "p1.spo2_scale"),
        (
            {"p1": {"quiet_hours": {"start": "22:00", "end": "7", "timezone": "Mars/Base"}}},
            "p1.quiet_hours",
        ),
        ({"p1": {"snooze_everything": True}}, "p1.snooze_everything"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, data: object, words: str) -> None:
    with pytest.raises(PatientSettingsError, match=words.replace(".", r"\.")):
        load_patient_settings(write(tmp_path, data))


def test_the_worker_refuses_a_bad_file_with_a_clear_message(tmp_path: Path) -> None:
    path = write(tmp_path, {"p1": {"spo2_scale": 3}})
    result = CliRunner().invoke(
        main,
        ["worker"],
        env={
            "BEDSIDE_STREAM__PATIENT_SETTINGS_FILE": str(path),
            "BEDSIDE_KAFKA__PROFILE": "kafka",
        },
    )
    assert result.exit_code != 0
    assert "patient settings file" in result.output and "p1.spo2_scale" in result.output


def test_the_glucose_model_reads_time_of_day_in_the_patients_zone(tmp_path: Path) -> None:

    path = write(tmp_path, {"sh-1": {"tz": "Asia/Shanghai"}, "ldn": {"tz": "Europe/London"}})
    pipeline = PatientPipeline(
        StreamSettings(patient_settings_file=path),
        models=ModelScoring(ScoringSettings(provider="cpu")).serving_models(),
    )
    summer = int(datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
    assert pipeline.profile("sh-1").utc_offset_minutes(summer) == 480
    assert pipeline.profile("ldn").utc_offset_minutes(summer) == 60  # British Summer Time
    assert pipeline.profile("elsewhere").utc_offset_minutes(summer) == 0  # nothing known: UTC
    glucose = next(m for m in pipeline.models if m.family.name == "glucose")
    window = PatientWindow("sh-1")
    window.apply_value(CGM_CODE, Kind.GLUCOSE, summer, 120.0, allowed_lateness_ms=0,
                       max_vital_samples=1)  # fmt: skip
    x = glucose.family.input(window, pipeline.profile("sh-1"))
    assert x is not None

    minutes = math.degrees(math.atan2(x[-1, 4], x[-1, 5])) % 360 * 4
    assert round(minutes) == 20 * 60  # 12:00 UTC is 20:00 in Shanghai


def test_an_unknown_patient_zone_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"p1": {"tz": "Mars/Olympus"}})
    with pytest.raises(PatientSettingsError, match=r"p1\.tz.*unknown time zone"):
        load_patient_settings(path)


def test_without_a_zone_the_offset_the_reading_was_written_in_counts(tmp_path: Path) -> None:
    received = datetime(2026, 7, 1, 12, 5, tzinfo=UTC)
    nightscout = decode_record(
        orjson.dumps([{"type": "sgv", "sgv": 120, "date": 1782907200000, "utcOffset": 480}]),
        received_at=received, key=b"sh-2",
    )  # fmt: skip
    fhir = decode_record(
        orjson.dumps({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3"}]},
            "subject": {"reference": "Patient/sh-2"},
            "effectiveDateTime": "2026-07-01T14:00:00+02:00",
            "valueQuantity": {"value": 120, "unit": "mg/dL"},
        }),
        received_at=received, key=None,
    )  # fmt: skip
    native = decode_record(
        orjson.dumps({"patient_id": "sh-2", "code": "99504-3", "value": 120, "unit": "mg/dL",
                      "effective_at": "2026-07-01T12:00:00Z"}),
        received_at=received, key=None,
    )  # fmt: skip
    [ns], [fh], [na] = nightscout.observations, fhir.observations, native.observations
    assert (ns.utc_offset_min, fh.utc_offset_min, na.utc_offset_min) == (480, 120, 0)
    assert ns.effective_at == fh.effective_at == na.effective_at  # the same instant
    direct = PatientWindow("sh-2")
    direct.apply(ns, allowed_lateness_ms=0, max_vital_samples=1)
    assert direct.utc_offset_min == 480
    path = write(tmp_path, {"ldn": {"tz": "Europe/London"}})
    scoring = ModelScoring(ScoringSettings(provider="cpu"))
    pipeline = PatientPipeline(
        StreamSettings(patient_settings_file=path), models=scoring.serving_models()
    )
    # the stream's path: the pipeline applies it (and a stored state keeps the offset)
    state, _ = apply(pipeline, "sh-2", None, [ns], scorer=scoring)
    window = codec.decode(codec.encode(state)).window
    assert window.utc_offset_min == 480
    glucose = next(m for m in pipeline.models if m.family.name == "glucose")

    def local_minutes(profile_of: str) -> int:
        x = glucose.family.input(window, pipeline.profile(profile_of))
        assert x is not None
        return round(math.degrees(math.atan2(x[-1, 4], x[-1, 5])) % 360 * 4)

    assert local_minutes("sh-2") == 20 * 60  # the reading's +08:00
    assert local_minutes("ldn") == 13 * 60  # the settings' zone wins (BST)
