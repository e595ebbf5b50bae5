"""``bedside dead-letters``: filters and readable originals (the topic reading is integration)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from factories import cgm
from fakes import apply

from deploy.deadletters import decoded, select
from streams.ingest.problems import DeadLetter, DecodeResult, Reason
from streams.processing import codec
from streams.processing.pipeline import PatientPipeline
from streams.settings import StreamSettings


def letter(reason: Reason, original: bytes, key: str) -> dict[str, object]:
    result = DecodeResult(None)
    result.reject(reason, "why")
    built = DeadLetter.build(
        result, original, topic="t", partition=0, offset=1, key=key.encode(),
        received_at=datetime(2026, 11, 24, tzinfo=UTC),
    )  # fmt: skip
    return {**orjson.loads(built.model_dump_json()), "key": key}


def test_a_quarantined_state_decodes_to_the_window_it_held() -> None:
    state, _ = apply(PatientPipeline(StreamSettings()), "syn-q", None, [cgm(0, 123)])
    window = state.window
    shown = decoded(letter(Reason.STATE, codec.encode(state), "syn-q"))
    assert shown["patient_id"] == "syn-q" and shown["watermark"] == window.watermark
    assert shown["signals"]["last_seen"] == window.last_seen
    assert decoded(letter(Reason.STATE, b"\xc1garbage", "syn-q")) == {
        "undecodable_state_b64": "wWdhcmJhZ2U="
    }


def test_filters_by_reason_and_key() -> None:
    letters = [
        letter(Reason.TIME, b'{"a": 1}', "p1"),
        letter(Reason.STATE, b"\x90", "p2"),
        letter(Reason.TIME, b"\xff", "p2"),
    ]
    assert [x["key"] for x in select(letters, "time", None, False)] == ["p1", "p2"]
    [only] = select(letters, "time", "p2", True)
    assert only["original"] == {"binary_b64": "/w=="}
    assert [x["original"] for x in select(letters, None, "p1", True)] == ['{"a": 1}']
