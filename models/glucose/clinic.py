"""``bedside evaluate glucose --cgm FILE``: a clinic checks the served model on its own patients.

Reads the common CGM exports, replays every reading through the serving path (window,
feature contract, the installed ONNX model and its gate) and reports the figures of
:mod:`models.glucose.real_eval` with stable keys. Formats:

- ``tidy``: CSV with columns ``id,time,gl`` (mg/dL), the iglu tools' convention; ``NA`` or an
  empty ``gl`` is skipped; times without a zone are read in ``--tz``.
- ``nightscout``: a JSON array of Nightscout ``entries`` (``type`` ``sgv``; ``date`` in epoch ms
  or ``dateString``; ``utcOffset`` in minutes gives the local time of day).
- ``clarity``: Dexcom Clarity CSV export (rows whose ``Event Type`` is ``EGV``; ``Low`` and
  ``High`` as 39 and 401 mg/dL; a mmol/L export is converted).
- ``libreview``: LibreView CSV export (a title line, then the header; ``Record Type`` 0
  historic and 1 scan readings; mg/dL or mmol/L; ``MM-DD-YYYY`` or ``DD-MM-YYYY`` times,
  told apart from the data, ``MM-DD-YYYY`` when every date fits both).

A malformed file stops with an error naming the file, line and column.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .real import Visit, replay
from .real_eval import calibrated, evaluate

FORMATS = ("tidy", "nightscout", "clarity", "libreview")
MMOL_TO_MG_DL = 18.016


class CgmFileError(ValueError):
    """A CGM file that cannot be read; the message names file, line and column."""

    def __init__(self, path: Path, line: int, column: int, problem: str) -> None:
        super().__init__(f"{path}: line {line}, column {column}: {problem}")


@dataclass
class Reading:
    patient: str
    t_ms: int
    mg_dl: float
    offset_min: int | None = None  # the reading's own offset from UTC, where the file says


def _when(text: str, zone: tzinfo, formats: tuple[str, ...] = ()) -> datetime:
    text = text.strip()
    for layout in formats:
        try:
            return datetime.strptime(text, layout).replace(tzinfo=zone)  # noqa: DTZ007
        except ValueError:
            continue
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _rows(path: Path, skip: int = 0) -> Iterator[tuple[int, dict[str, str], list[str]]]:
    """(line number, row by column name, column names) of a CSV file."""
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    reader = csv.reader(io.StringIO("\n".join(lines[skip:])))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CgmFileError(path, skip + 1, 1, "the file is empty") from None
    for number, row in enumerate(reader, start=skip + 2):
        if not any(cell.strip() for cell in row):
            continue
        yield number, dict(zip(header, row, strict=False)), header


def _column(path: Path, header: list[str], line: int, *names: str) -> str:
    for name in names:
        for column in header:
            if column.lower() == name.lower():
                return column
    raise CgmFileError(path, line, 1, f"no column {' or '.join(map(repr, names))} in {header}")


def _number(path: Path, line: int, column: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CgmFileError(path, line, column, f"{what} {text!r} is not a number") from None
    if not np.isfinite(value) or not 0 < value < 2000:
        raise CgmFileError(path, line, column, f"{what} {text!r} is not a glucose value")
    return value


def read_tidy(path: Path, zone: tzinfo) -> list[Reading]:
    out = []
    columns: tuple[str, str, str] | None = None
    for line, row, header in _rows(path):
        if columns is None:  # the header's, found once
            columns = tuple(_column(path, header, 1, n) for n in ("id", "time", "gl"))  # type: ignore[assignment]
        assert columns is not None
        id_col, time_col, gl_col = columns
        value = row.get(gl_col, "").strip()
        if value in ("", "NA", "NaN"):
            continue
        try:
            moment = _when(row[time_col], zone)
        except (ValueError, KeyError):
            problem = f"time {row.get(time_col)!r} is not a date-time"
            raise CgmFileError(path, line, header.index(time_col) + 1, problem) from None
        gl = _number(path, line, header.index(gl_col) + 1, value, "gl")
        out.append(Reading(row[id_col].strip() or "unnamed", int(moment.timestamp() * 1000), gl))
    return out


def _json_entries(path: Path) -> Iterator[tuple[int, int, Any]]:
    """(line, column, entry) of a JSON array, with each entry's position."""
    text = path.read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder()

    def position(index: int) -> tuple[int, int]:
        line = text.count("\n", 0, index) + 1
        return line, index - (text.rfind("\n", 0, index) + 1) + 1

    def fail(index: int, problem: str) -> CgmFileError:
        return CgmFileError(path, *position(index), problem)

    index = len(text) - len(text.lstrip())
    if not text[index : index + 1] == "[":
        raise fail(index, "expected a JSON array of Nightscout entries")
    index += 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text):
            raise fail(index, "the array is not closed")
        if text[index] == "]":
            return
        try:
            entry, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            raise fail(error.pos, f"not JSON: {error.msg}") from None
        yield (*position(index), entry)
        index = end


def read_nightscout(path: Path, zone: tzinfo) -> list[Reading]:
    out = []
    patient = path.stem
    for line, column, entry in _json_entries(path):
        if not isinstance(entry, dict):
            raise CgmFileError(path, line, column, "an entry must be a JSON object")
        if entry.get("type", "sgv") != "sgv" or entry.get("sgv") is None:
            continue
        sgv = entry["sgv"]
        if isinstance(sgv, bool) or not isinstance(sgv, int | float | str):
            raise CgmFileError(path, line, column, f"sgv {sgv!r} is not a number")
        value = _number(path, line, column, str(sgv), "sgv")
        if isinstance(entry.get("date"), int | float) and not isinstance(entry["date"], bool):
            t_ms = int(entry["date"])
        elif isinstance(entry.get("dateString"), str):
            try:
                t_ms = int(_when(entry["dateString"], zone).timestamp() * 1000)
            except ValueError:
                problem = f"dateString {entry['dateString']!r} is not a date-time"
                raise CgmFileError(path, line, column, problem) from None
        else:
            raise CgmFileError(path, line, column, "an sgv entry needs 'date' or 'dateString'")
        offset = entry.get("utcOffset")
        own = (
            int(offset)
            if isinstance(offset, int | float) and not isinstance(offset, bool)
            else None
        )
        out.append(Reading(patient, t_ms, value, own))
    return out


def read_clarity(path: Path, zone: tzinfo) -> list[Reading]:
    out = []
    for line, row, header in _rows(path):
        event = _column(path, header, 1, "Event Type")
        if row.get(event, "").strip() != "EGV":
            continue
        time_col = _column(path, header, 1, "Timestamp (YYYY-MM-DDThh:mm:ss)", "Timestamp")
        mmol = any("mmol" in h for h in header)
        value_col = _column(
            path, header, 1, "Glucose Value (mmol/L)" if mmol else "Glucose Value (mg/dL)"
        )
        raw = row.get(value_col, "").strip()
        if raw.lower() in ("low", "high"):
            value = 39.0 if raw.lower() == "low" else 401.0
        else:
            value = _number(path, line, header.index(value_col) + 1, raw, "glucose value")
            value = value * MMOL_TO_MG_DL if mmol else value
        try:
            moment = _when(row[time_col], zone)
        except (ValueError, KeyError):
            problem = f"timestamp {row.get(time_col)!r} is not a date-time"
            raise CgmFileError(path, line, header.index(time_col) + 1, problem) from None
        out.append(Reading(path.stem, int(moment.timestamp() * 1000), value))
    return out


LIBRE_ORDERS = ("%m-%d-%Y %H:%M", "%d-%m-%Y %H:%M")


def read_libreview(path: Path, zone: tzinfo) -> list[Reading]:
    rows = list(_rows(path, skip=1))  # line 1 is the export's title
    if not rows:
        raise CgmFileError(path, 2, 1, "no readings after the header")
    header = rows[0][2]
    time_col = _column(path, header, 2, "Device Timestamp")
    kind_col = _column(path, header, 2, "Record Type")
    mmol = any("mmol" in h for h in header)
    unit = "mmol/L" if mmol else "mg/dL"
    historic = _column(path, header, 2, f"Historic Glucose {unit}")
    scan = _column(path, header, 2, f"Scan Glucose {unit}")
    stamps = [(line, row.get(time_col, "").strip()) for line, row, _ in rows]
    order = next((o for o in LIBRE_ORDERS if all(_parses(s, o) for _, s in stamps)), None)
    if order is None:
        line, stamp = next(((n, s) for n, s in stamps if not _parses(s, LIBRE_ORDERS[0])))
        problem = f"Device Timestamp {stamp!r} is not MM-DD-YYYY HH:MM or DD-MM-YYYY HH:MM"
        raise CgmFileError(path, line, header.index(time_col) + 1, problem)
    out = []
    for line, row, _ in rows:
        kind = row.get(kind_col, "").strip()
        column = {"0": historic, "1": scan}.get(kind)
        raw = row.get(column, "").strip() if column else ""
        if not raw:
            continue
        value = _number(path, line, header.index(column) + 1, raw, "glucose")  # type: ignore[arg-type]
        value = value * MMOL_TO_MG_DL if mmol else value
        moment = datetime.strptime(row[time_col].strip(), order).replace(tzinfo=zone)  # noqa: DTZ007
        out.append(Reading(path.stem, int(moment.timestamp() * 1000), value))
    return out


def _parses(text: str, layout: str) -> bool:
    try:
        datetime.strptime(text, layout)  # noqa: DTZ007
    except ValueError:
        return False
    return True


READERS = {
    "tidy": read_tidy,
    "nightscout": read_nightscout,
    "clarity": read_clarity,
    "libreview": read_libreview,
}


def visits(readings: list[Reading], zone: tzinfo) -> list[Visit]:
    """One series per patient, oldest first, duplicate times dropped."""
    by_patient: dict[str, dict[int, Reading]] = {}
    for reading in readings:
        by_patient.setdefault(reading.patient, {})[reading.t_ms] = reading
    out = []
    for patient, series in sorted(by_patient.items()):
        ordered = [series[t] for t in sorted(series)]
        times = np.array([r.t_ms for r in ordered], np.int64)
        own = [r.offset_min for r in ordered if r.offset_min is not None]
        middle = datetime.fromtimestamp(int(times[len(times) // 2]) / 1000, tz=UTC)
        offset = middle.astimezone(zone).utcoffset()
        zone_offset = int(offset.total_seconds() // 60) if offset else 0
        out.append(
            Visit(
                patient,
                "clinic",
                patient,
                times,
                np.array([r.mg_dl for r in ordered]),
                own[-1] if own else zone_offset,
            )
        )
    return out


def evaluate_file(path: Path, fmt: str, tz: str, model_dir: Path | None = None) -> dict[str, Any]:
    """Every figure of the served glucose model (gated) and the rules on ``path``."""
    from streams.scoring.service import ModelScoring
    from streams.settings import ScoringSettings

    zone = ZoneInfo(tz)
    series = visits(READERS[fmt](path, zone), zone)
    if not series:
        raise CgmFileError(path, 1, 1, "no CGM readings found")
    scoring = ModelScoring(ScoringSettings(models=["glucose"], model_dir=model_dir, provider="cpu"))
    [model] = [m for m in scoring.serving_models() if m.role == "primary"]
    r = replay(series)
    if not len(r.now):
        raise CgmFileError(path, 1, 1, "no reading has an hour of data before it")
    forecasts, probabilities = [], []
    for start in range(0, len(r.x), 4096):
        forecast, probability = model.run(r.x[start : start + 4096])
        forecasts.append(forecast)
        probabilities.append(probability)
    forecast, probability = np.concatenate(forecasts), np.concatenate(probabilities)
    manifest = model.manifest
    gate = manifest.gate
    if gate is not None:  # the probabilities as they serve (the threshold's scale)
        probability = calibrated(gate.calibration, probability)
    rate = manifest.training_data.get("hypo_base_rate_train")
    known = r.hypo_known
    constant = float(rate) if rate is not None else float(r.hypo[known, 0].mean())
    figures = evaluate(
        series,
        r,
        forecast,
        probability[:, 0],
        threshold=manifest.thresholds["p_low_30"],
        base_rate=constant,
        gate=[gate.forecast.get(str(h), "ar2") for h in (15, 30, 45, 60)]
        if gate
        else ["model"] * 4,
        alarm_source=gate.predicted_low if gate else "model",
        rule=gate.predicted_low_rule if gate else "probability",
        personal=gate.personal if gate else (),
        cgm_below=gate.predicted_low_cgm_below if gate else None,
    )
    figures["alarms"].pop("model")
    days = sum((v.times_ms[-1] - v.times_ms[0]) / 86_400_000 for v in series)
    return {
        "file": str(path),
        "format": fmt,
        "model": model.key,
        "readings": int(sum(len(v.times_ms) for v in series)),
        "monitored_days": round(days, 2),
        "constant_rate_source": "model training patients" if rate is not None else "this file",
        **figures,
    }


def text_report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['file']} ({result['format']}): {result['patients']} patients, "
        f"{result['readings']} readings, {result['monitored_days']} days; model {result['model']}",
        "",
        "horizon  " + "  ".join(f"{m:>14}" for m in ("model", "served", "ar2", "last", "linear")),
    ]
    for horizon, row in result["horizons"].items():
        cells = [
            f"{row[m]['rmse']:>6} / {row[m]['mae']:>5}" if row[m]["rmse"] is not None else "—"
            for m in ("model", "served", "ar2", "last", "linear")
        ]
        lines.append(f"{horizon:>4} min " + "  ".join(f"{c:>14}" for c in cells))
    lines += [
        "(RMSE / MAE mg/dL, n=" + str(result["horizons"]["30"]["model"]["n"]) + " at 30 min)",
        "",
    ]
    for rule, a in result["alarms"].items():
        lines.append(
            f"{rule:>14}: {a['alarms']} alarms, warned {a['warned']}/{a['events']} events, "
            f"precision {a['precision']}, {a['false_alarms_per_day']} false/day, "
            f"median lead {a['median_lead_min']} min"
        )
    c = result["calibration"]
    lines.append(
        f"\nP(<70 in 30 min): mean {c['mean_predicted']} vs observed {c['observed']}; "
        f"Brier {c['brier']} vs constant rate {c['brier_constant']} "
        f"({result['constant_rate_source']})"
    )
    return "\n".join(lines)
