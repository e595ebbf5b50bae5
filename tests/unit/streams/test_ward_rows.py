"""The ward view's rows, from risk events as the pipeline publishes them."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from factories import cgm, vital
from fakes import apply

from streams.engine.risk_view import WardView
from streams.processing.pipeline import PatientPipeline
from streams.settings import KafkaSettings, StreamSettings
from streams.ward_rows import trend_arrow, ward_row


def risk_of(observations: list[Any]) -> dict[str, Any]:
    _, output = apply(PatientPipeline(StreamSettings()), "syn-p1", None, observations)
    assert output.risk is not None
    return dict(orjson.loads(output.risk))


def test_a_row_says_vitals_in_words_news2_with_its_band_and_glucose_with_its_trend() -> None:
    observations = [cgm(i * 5, 150 - 10 * i) for i in range(4)] + [
        vital("8867-4", 18, 128),
        vital("9279-1", 18, 26),
        vital("59408-5", 18, 91),
        vital("8310-5", 18, 38.44),
    ]
    row = ward_row(risk_of(observations))
    assert [v["text"] for v in row["vitals"]] == ["HR 128 /min", "RR 26 /min", "SpO2 91%",
                                                   "T 38.4 °C"]  # fmt: skip
    assert row["news2"]["text"].startswith("NEWS2 ") and row["news2"]["band"] in ("5-6", "7+")
    glucose = row["glucose"]
    assert glucose["mg_dl"] == 120 and glucose["trend"] in ("↓", "↘")
    assert glucose["at"] == int(observations[3].effective_at.timestamp() * 1000)
    assert row["forecast"]["served_by"] == {"30": "ar2"}  # no model here: AR2 served


@pytest.mark.parametrize(
    ("rate", "arrow"),
    [(None, ""), (-3.5, "⇊"), (-2.5, "↓"), (-1.5, "↘"), (0, "→"), (1.5, "↗"), (2.5, "↑"), (4, "⇈")],
)
def test_trend_arrows_follow_nightscout(rate: float | None, arrow: str) -> None:
    assert trend_arrow(rate) == arrow


def test_the_view_keeps_the_newest_row_and_flushes_changes_once_a_second() -> None:
    async def run() -> None:
        view = WardView(KafkaSettings(), "bedside.risk")
        queue = view.subscribers.subscribe()
        newer = {"patient_id": "p1", "event_time": "2026-12-04T10:05:00+00:00", "scores": []}
        older = {**newer, "event_time": "2026-12-04T10:00:00+00:00"}
        for event in (newer, older, {**newer, "patient_id": "p2"}, newer):
            view.apply(event)
        assert view.rows["p1"]["at"] == newer["event_time"]  # an older event changes nothing
        view.flush()
        view.flush()  # nothing changed since: nothing sent
        message = queue.get_nowait()
        assert [r["patient_id"] for r in message["rows"]] == ["p1", "p2"] and queue.empty()

    asyncio.run(run())
