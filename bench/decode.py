"""Decode + validate throughput per ingest format (one process, one core).

    .venv/bin/python bench/decode.py [--records 5000]

Prints records/s and observations/s for each format and a JSON line with the same figures.
Synthetic patients only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson

from streams.ingest.decode import decode_record
from streams.schemas.observation import Kind

NOW = datetime.now(UTC)
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def _when(i: int) -> datetime:
    return NOW - timedelta(hours=2) + timedelta(seconds=i)


def native(i: int) -> bytes:
    return orjson.dumps(
        {
            "patient_id": f"bench-{i % 1000}",
            "code": "8867-4",
            "value": 60 + i % 40,
            "unit": "/min",
            "effective_at": _when(i).isoformat(),
            "source": "bench",
        }
    )


def fhir_observation(i: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "59408-5"}]},
            "subject": {"reference": f"Patient/bench-{i % 1000}"},
            "effectiveDateTime": _when(i).isoformat(),
            "valueQuantity": {"value": 90 + i % 10, "system": UCUM, "code": "%"},
        }
    )


def fhir_bp_bundle(i: int) -> bytes:
    panel = {
        "resourceType": "Observation",
        "id": f"bp{i}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/bench-{i % 1000}"},
        "effectiveDateTime": _when(i).isoformat(),
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    }
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": panel}]}
    )


def nightscout(i: int) -> bytes:
    return orjson.dumps(
        [
            {
                "type": "sgv",
                "sgv": 80 + i % 100,
                "date": int(_when(i).timestamp() * 1000),
                "device": "xDrip",
            }
        ]
    )


FORMATS: dict[str, tuple[Callable[[int], bytes], Kind]] = {
    "native": (native, Kind.VITAL),
    "fhir Observation": (fhir_observation, Kind.VITAL),
    "fhir Bundle (BP panel)": (fhir_bp_bundle, Kind.VITAL),
    "nightscout entry": (nightscout, Kind.GLUCOSE),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    figures = {}
    print(f"{'format':<24} {'records/s':>10} {'observations/s':>15}")  # noqa: T201
    for name, (make, kind) in FORMATS.items():
        records = [make(i) for i in range(args.records)]
        start = time.perf_counter()
        observations = 0
        for raw in records:
            result = decode_record(raw, received_at=NOW, topic_kind=kind, key=b"bench-1")
            assert not result.problems, result.problems
            observations += len(result.observations)
        elapsed = time.perf_counter() - start
        figures[name] = {
            "records_per_s": round(args.records / elapsed),
            "observations_per_s": round(observations / elapsed),
        }
        print(f"{name:<24} {args.records / elapsed:>10,.0f} {observations / elapsed:>15,.0f}")  # noqa: T201
    print(json.dumps({"bench": "decode", "records": args.records, "figures": figures}))  # noqa: T201


if __name__ == "__main__":
    main()
