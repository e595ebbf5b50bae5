"""Pseudonyms: keyed, stable, never applied twice; settings re-keyed; the batch step uses them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from itertools import count

import orjson
from fakes import NOW, TOPICS, Record, partition_of
from fakes import StepHarness as Harness

from streams.access.pseudonyms import Pseudonyms
from streams.patients import PatientDirectory
from streams.processing.pipeline import PatientPipeline
from streams.settings import GlucoseTargetSettings, StreamSettings

KEY = "unit-pseudonym-key-0123456789abcdef0123"
_offsets = count()


def test_a_pseudonym_is_keyed_stable_and_not_applied_twice() -> None:
    ours, theirs = Pseudonyms(KEY), Pseudonyms("another-key-0123456789abcdef012345")
    p = ours.of("MRN-0042")
    assert p == ours.of("MRN-0042") and p != theirs.of("MRN-0042") and p != ours.of("MRN-0043")
    assert Pseudonyms.is_pseudonym(p) and "0042" not in p
    assert ours.of(p) == p  # a record re-keyed to its partition is not pseudonymised again
    assert ours.display(p) == "MRN-0042" and theirs.display(p) is None


def test_patient_settings_follow_the_patient_under_its_pseudonym() -> None:
    names = Pseudonyms(KEY)
    targets = GlucoseTargetSettings(urgent_low=60, low=90, high=200, urgent_high=300)
    settings = StreamSettings(glucose_targets={"MRN-7": targets}, spo2_scale2_patients=["MRN-8"])
    patients = PatientDirectory.from_settings(settings, names)
    pipeline = PatientPipeline(settings, patients=patients)
    assert pipeline.profile(patients.key("MRN-7")).glucose.low == 90
    assert pipeline.profile(patients.key(" mrn-7\u200b")).glucose.low == 90  # one patient
    assert pipeline.profile(patients.key("MRN-8")).spo2_scale == 2
    assert pipeline.profile("MRN-7").glucose.low != 90  # the clear id names nobody inside
    assert patients.display(patients.key("MRN-7")) == "MRN-7"  # as the settings spell it


def record(key: bytes, body: bytes) -> Record:
    return Record(TOPICS.glucose, partition_of(key), next(_offsets), key, body)


def reading(patient: str, minutes_ago: int, value: float) -> Record:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    body = {"patient_id": patient, "code": "99504-3", "value": value, "unit": "mg/dL",
            "effective_at": at}  # fmt: skip
    return record(patient.encode(), orjson.dumps(body))


def test_the_batch_step_keys_stores_and_publishes_only_pseudonyms() -> None:
    names = Pseudonyms(KEY)

    async def run() -> Harness:
        harness = Harness(pseudonyms=names)
        batch = [reading("MRN-9", 10, 41), reading("MRN-9", 5, 38), record(b"MRN-10", b"{no")]
        while batch:  # records re-keyed to their pseudonym's partition come round again
            seen = len(harness.records.sent)
            await harness.step(batch)
            batch = [record(k or b"", v) for t, k, v in harness.records.sent[seen:]
                     if t == TOPICS.glucose]  # fmt: skip
        await harness.checkpoint.drain()
        return harness

    harness = asyncio.run(run())
    outputs = [(t, k or b"", v) for t, k, v in harness.records.sent if t != TOPICS.glucose]
    written = b"".join(k + b" " + v for _, k, v in outputs) + b"".join(
        k + b" " + v for part in harness.state.data.values() for k, v in part.items()
    )
    letters = [orjson.loads(v) for t, _, v in outputs if t == TOPICS.deadletter]
    for letter in letters:
        letter.pop("original_b64")  # the sender's bytes: the topic holds PHI by design
    assert b"MRN-9" not in written and b"mrn-9" not in written
    assert b"MRN-10" not in orjson.dumps(letters)
    alarms = [orjson.loads(v) for t, _, v in outputs if t == TOPICS.alerts]
    assert alarms and {a["patient_id"] for a in alarms} == {names.of("mrn-9")}
    assert [letter["reason"] for letter in letters] == ["malformed_json"]
    assert harness.series.lines and not any("MRN" in line for line in harness.series.lines)
