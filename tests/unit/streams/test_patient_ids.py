"""One patient, one id: spellings of an id, pseudonyms' memory and keyed event ids."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import orjson
import pytest
from fakes import NOW, TOPICS, Record, StepHarness, partition_of

from streams.access.pseudonyms import Pseudonyms
from streams.patients import PatientDirectory, PatientSettings, normalise_id
from streams.settings import WebSettings
from streams.timefmt import clock_time

KEY = "patient-ids-test-key-" + "3b7d" * 8


@pytest.mark.parametrize("spelling", ["p-700", "P-700 ", "p-700\u200b", " P-700", "p\u2011700"])
def test_spellings_of_one_id_are_one_patient(spelling: str) -> None:
    expected = "p-700" if "\u2011" not in spelling else normalise_id("p\u2011700")
    assert normalise_id(spelling) == expected
    assert normalise_id("p 700") == normalise_id("p  700") == "p 700"


def test_three_spellings_reach_one_window_with_its_own_settings() -> None:
    def reading(patient: str, minutes_ago: int, value: float) -> Record:
        at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
        body = {"patient_id": patient, "code": "99504-3", "value": value, "unit": "mg/dL",
                "effective_at": at}  # fmt: skip
        return Record(TOPICS.glucose, partition_of(patient.encode()), minutes_ago,
                      patient.encode(), orjson.dumps(body))  # fmt: skip

    async def run() -> StepHarness:
        harness = StepHarness()
        batch = [reading("p-700", 15, 120), reading("P-700 ", 10, 118),
                 reading("p-700\u200b", 5, 116)]  # fmt: skip
        while batch:  # records re-keyed to their partition come round again
            seen = len(harness.records.sent)
            await harness.step(batch)
            batch = [Record(t, partition_of(k or b""), 99, k, v)
                     for t, k, v in harness.records.sent[seen:] if t == TOPICS.glucose]  # fmt: skip
        await harness.checkpoint.drain()
        return harness

    harness = asyncio.run(run())
    stored = {k for part in harness.state.data.values() for k in part}
    assert stored == {b"p-700"}


def test_a_flood_of_ids_evicts_least_recently_seen_names_never_the_settings_patients() -> None:
    names = Pseudonyms(KEY, memory=100)
    directory = PatientDirectory({"MRN-1": PatientSettings(ward="4B")}, names)
    ward_patient = directory.key("MRN-1")
    regular = directory.key("MRN-2")
    for i in range(150):
        directory.key(f"junk-{i}")
        if i % 10 == 0:
            directory.key("MRN-2")  # seen again: stays
    assert directory.display(ward_patient) == "MRN-1"
    assert directory.display(regular) == "MRN-2"
    assert directory.display(directory.key("junk-0")) == "junk-0"  # seen again just now


def test_event_ids_are_keyed_when_ids_are_pseudonymised() -> None:
    from factories import cgm

    names = Pseudonyms(KEY)
    clear = cgm(0, 100, patient="MRN-0042")
    [keyed] = names.observations([clear])
    assert keyed.event_id != clear.event_id and keyed.event_id.startswith("pe-")
    assert hashlib.sha256(b"MRN-0042").hexdigest()[:16] not in keyed.event_id
    assert names.observations([keyed])[0].event_id == keyed.event_id  # re-keying keeps it
    assert Pseudonyms("another-key-" + "9" * 24).observations([clear])[0].event_id != (
        keyed.event_id
    )


def test_no_authentication_is_refused_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="AUTH=none"):
        WebSettings(host="0.0.0.0", auth="none", token="a" * 40)  # noqa: S104
    assert WebSettings(host="127.0.0.1", auth="none").auth == "none"


def test_alarm_reasons_say_clock_times_with_their_zone() -> None:
    assert clock_time("2026-12-05T23:36:01+00:00") == "23:36 UTC"
    assert clock_time("2026-12-05T23:36:01+00:00", lambda _: 60) == "00:36 (UTC+01:00)"
    assert clock_time("2026-12-05T23:36:01+00:00", lambda _: -330) == "18:06 (UTC-05:30)"
    assert clock_time("not a time") == "not a time"


def test_a_low_alarm_names_the_reading_by_clock_time() -> None:
    import orjson
    from factories import cgm
    from fakes import apply

    from streams.processing.pipeline import PatientPipeline
    from streams.settings import StreamSettings

    pipeline = PatientPipeline(StreamSettings())
    _, output = apply(pipeline, "syn-p1", None, [cgm(0, 60), cgm(5, 58), cgm(10, 56)])
    events = [orjson.loads(a) for a in output.alerts]
    [opened] = [e for e in events if e["transition"] == "opened" and e["kind"] == "low"]
    assert " UTC is below 70 mg/dL" in opened["reason"] and "+00:00" not in opened["reason"]


def test_settings_sources_spelling_one_patient_differently_merge(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from streams.settings import StreamSettings

    path = tmp_path / "patients.json"
    path.write_text(json.dumps({"mrn-7 ": {"ward": "4B"}}))
    targets = {"urgent_low": 60, "low": 90, "high": 200, "urgent_high": 300}
    stream = StreamSettings(
        glucose_targets={"MRN-7": targets}, spo2_scale2_patients=["Mrn-7"],
        patient_settings_file=path,
    )  # fmt: skip
    own = PatientDirectory.from_settings(stream).own("mrn-7")
    assert own is not None and own.ward == "4B" and own.spo2_scale == 2
    assert own.glucose_targets is not None and own.glucose_targets.low == 90


@pytest.mark.parametrize("patient", ["px-abc", "a b,c=d", "x\\y"])
def test_a_lines_patient_is_read_back_as_written(patient: str) -> None:
    from streams.sinks.lines import escape_tag, patient_of

    assert patient_of(f"labs,patient_id={escape_tag(patient)},code=1 value=1.0 5") == patient
