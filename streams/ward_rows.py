"""What the ward view says about a patient, from the patient's latest risk event.

A row: the latest vital signs in words and units, NEWS2 with its band, the latest CGM
reading with its trend, the served glucose forecast (and which forecaster served it), the
deterioration model's risk. Pure functions of the risk event (``streams.processing.pipeline``), so
every worker shows the same row whichever worker scored the patient.
"""

from __future__ import annotations

from typing import Any

#: name in the risk event -> (label, short label, unit), in the order a chart reads them
VITALS = {
    "heart_rate": ("Heart rate", "HR", "/min"),
    "respiratory_rate": ("Resp. rate", "RR", "/min"),
    "spo2": ("SpO2", "SpO2", "%"),
    "systolic_bp": ("Systolic BP", "BP", "mmHg"),
    "body_temperature": ("Temperature", "T", "°C"),
    "consciousness": ("Consciousness", "ACVPU", ""),
    "o2_flow": ("O2 flow", "O2", "L/min"),
}
ACVPU = ("alert", "new confusion", "voice", "pain", "unresponsive")
BANDS = {"0": "none", "1-4": "low", "5-6": "medium", "7+": "high"}


def trend_arrow(rate: float | None) -> str:
    """Nightscout's arrows by rate of change (mg/dL per min)."""
    if rate is None:
        return ""
    for limit, arrow in ((-3, "⇊"), (-2, "↓"), (-1, "↘"), (1, "→"), (2, "↗"), (3, "↑")):
        if rate < limit:
            return arrow
    return "⇈"


def vital_words(latest: dict[str, Any], latest_at: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, (label, short, unit) in VITALS.items():
        value = latest.get(name)
        if value is None:
            continue
        if name == "consciousness":
            shown = ACVPU[int(value)] if 0 <= int(value) < len(ACVPU) else f"{value:g}"
        else:
            shown = f"{value:g}" if name != "body_temperature" else f"{value:.1f}"
        text = f"{short} {shown}{' ' + unit if unit and unit != '%' else unit}"
        out.append(
            {"name": name, "label": label, "value": value, "unit": unit, "text": text,
             "at": latest_at.get(name)}
        )  # fmt: skip
    return out


def ward_row(risk: dict[str, Any]) -> dict[str, Any]:
    """The ward view's row of the patient of ``risk`` (a risk event)."""
    scores = {s["name"]: s for s in risk.get("scores", []) if isinstance(s, dict)}
    inputs = risk.get("inputs", {})
    latest, latest_at = inputs.get("latest", {}), inputs.get("latest_at", {})
    row: dict[str, Any] = {
        "patient_id": risk["patient_id"],
        "at": risk.get("event_time"),
        "vitals": vital_words(latest, latest_at),
        "news2": None,
        "glucose": None,
        "forecast": None,
        "deterioration": None,
    }
    news2 = scores.get("news2")
    if news2 and news2.get("value") is not None:
        band = str(news2.get("band", ""))
        row["news2"] = {
            "score": int(news2["value"]),
            "band": band,
            "text": f"NEWS2 {int(news2['value'])} ({BANDS.get(band, band)})",
            "missing": news2.get("missing", []),
        }
    glucose = scores.get("glucose")
    if glucose and glucose.get("value") is not None:
        rate = glucose.get("rate_mg_dl_per_min")
        row["glucose"] = {
            "mg_dl": glucose["value"],
            "at": latest_at.get("cgm_glucose"),
            "rate": rate,
            "trend": trend_arrow(rate),
            "level": glucose.get("level"),
        }
    model = scores.get("glucose_model")
    if model and model.get("forecast_mg_dl"):
        row["forecast"] = {
            "mg_dl": model["forecast_mg_dl"],
            "served_by": model.get("forecast_served_by", {}),
            "version": model.get("version"),
        }
    elif glucose and glucose.get("ar2_30min_min_mg_dl") is not None:
        row["forecast"] = {
            "mg_dl": {"30": glucose["ar2_30min_min_mg_dl"]},
            "served_by": {"30": "ar2"},
            "version": glucose.get("ar2_version"),
        }
    deterioration = scores.get("deterioration_model")
    if deterioration and deterioration.get("value") is not None:
        row["deterioration"] = {
            "p": deterioration["value"],
            "threshold": deterioration.get("threshold"),
            "version": deterioration.get("version"),
        }
    return row
