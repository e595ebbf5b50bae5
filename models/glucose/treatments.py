"""Do insulin and meal records improve the glucose forecast? An ablation on validation.

The Shanghai visits record, beside the CGM, subcutaneous insulin doses (name and units, free
text), insulin-pump boluses and basal rates, intravenous insulin and meals (free text). The
served model reads CGM only, because the stream has no insulin or meal events. This module
asks the question before any of that is built: the same network and training as the shipped
model, its input widened by three channels on the same 5-min grid over the last 3 h:

- ``insulin``: units of prandial or premixed insulin (s.c. doses other than degludec,
  detemir and glargine, pump boluses, insulin in i.v. infusions) in the bin, / 10;
- ``meal``: a meal recorded in the bin (the dietary column, "data not available" excepted);
- ``recorded``: 1 where the visit records any of them: so the network can tell "none given"
  from "not known", and is trained with a third of the training visits' records hidden
  (``recorded`` = 0), to run without them.

Validation patients only: the widened network with its records, the same network with the
records hidden, and the CGM-only network trained alike (``bedside train glucose --real
--treatments``, ``models/reports/glucose_treatments.md``). Test patients are not read.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from streams.scoring.features import GLUCOSE

from ..nets import GlucoseGRU
from ..training import TrainConfig, fit, seed_everything
from . import policy, real, real_eval, real_train
from .evaluate import predict

CHANNELS = ("insulin", "meal", "recorded")
BASAL = ("degludec", "detemir", "glargine", "glarigine")  # long-acting: not a meal-time dose
DOSE = re.compile(r"([A-Za-z][A-Za-z0-9/\s\xa0]*?)[,\s]+([\d.]+)\s*IU", re.IGNORECASE)
STEP_MS = GLUCOSE.step_minutes * 60_000
HIDDEN_SHARE = 1 / 3  # training visits whose records are hidden


@dataclass(frozen=True)
class Treatments:
    """One visit's insulin doses (IU) and meals, times in ms (UTC)."""

    insulin_ms: np.ndarray
    insulin_iu: np.ndarray
    meal_ms: np.ndarray

    @property
    def recorded(self) -> bool:
        return bool(len(self.insulin_ms) or len(self.meal_ms))


def prandial_units(text: str) -> float:
    """Units of prandial or premixed insulin in a free-text s.c. or i.v. entry."""
    total = 0.0
    for name, units in DOSE.findall(text.replace("\xa0", " ")):
        if not any(b in name.lower() for b in BASAL):
            total += float(units)
    return total


def pump_units(text: str) -> float:
    """A pump bolus (IU); a note such as "temporarily suspend insulin delivery" is none."""
    try:
        return float(text.strip()) if text.strip() else 0.0
    except ValueError:
        return 0.0


def read_treatments(path: Path) -> Treatments:
    insulin_ms, insulin_iu, meal_ms = [], [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            t = int(
                datetime.fromisoformat(row["Date"].strip()).replace(tzinfo=real.CST).timestamp()
                * 1000
            )
            units = prandial_units(row.get("Insulin dose - s.c.") or "")
            units += prandial_units(row.get("Insulin dose - i.v.") or "")
            units += pump_units(row.get("CSII - bolus insulin (Novolin R, IU)") or "")
            if units > 0:
                insulin_ms.append(t)
                insulin_iu.append(units)
            meal = (row.get("Dietary intake") or "").strip()
            if meal and "not available" not in meal.lower():
                meal_ms.append(t)
    return Treatments(np.array(insulin_ms), np.array(insulin_iu, float), np.array(meal_ms))


def channels(r: real.Replay, of_visit: list[Treatments | None]) -> np.ndarray:
    """(n, steps, 3): the treatment channels of each sample, bins ending at its time (the
    last bin holds the sample's own time, as the CGM channels do)."""
    steps = GLUCOSE.steps
    out = np.zeros((len(r.t_ms), steps, len(CHANNELS)), np.float32)
    for v in np.unique(r.visit):
        known = of_visit[int(v)]
        if known is None or not known.recorded:
            continue
        rows = np.flatnonzero(r.visit == v)
        out[rows, :, 2] = 1.0
        for times, weights, column in (
            (known.insulin_ms, known.insulin_iu / 10.0, 0),
            (known.meal_ms, np.ones(len(known.meal_ms)), 1),
        ):
            for t, w in zip(times, weights, strict=True):
                back = (r.t_ms[rows] - t) // STEP_MS  # bins before the sample's own
                inside = (back >= 0) & (back < steps)
                out[rows[inside], steps - 1 - back[inside], column] += w
    out[:, :, 1] = np.minimum(out[:, :, 1], 1.0)
    return out


def visit_treatments(data: Path, visits: list[real.Visit]) -> dict[str, Treatments]:
    base = data / real.SHANGHAI
    folders = {"T1D": "T1DM", "T2D": "T2DM"}
    return {v.name: read_treatments(base / folders[v.population] / f"{v.name}.csv") for v in visits}


class WideGlucoseGRU(GlucoseGRU):
    """The shipped network with its input widened by the treatment channels."""

    def __init__(self, hidden: int = 32, extra: int = len(CHANNELS)) -> None:
        super().__init__(hidden=hidden)
        self.gru = nn.GRU(len(GLUCOSE.channels) + extra, hidden, 1, batch_first=True)


def _part(
    visits: list[real.Visit],
    split: dict[str, str],
    part: str,
    found: dict[str, Treatments],
    hide: float,
    seed: int,
) -> tuple[real.Replay, np.ndarray]:
    chosen = [v for v in visits if split[v.patient] == part]
    chosen += [real.interpolate(v) for v in chosen] + [real.resample(v, 30) for v in chosen]
    r = real.replay(chosen)
    rng = np.random.default_rng(seed)
    names = sorted({v.name for v in chosen})
    hidden_names = {n for n, draw in zip(names, rng.random(len(names)), strict=True) if draw < hide}
    known: list[Treatments | None] = [
        None if v.name in hidden_names else found[v.name] for v in chosen
    ]
    return r, channels(r, known)


def _rmse(model: nn.Module, x: np.ndarray, r: real.Replay) -> dict[str, float]:
    table = real_eval.forecast_table(r, {"model": predict(model, x)[0]})
    return {horizon: row["model"]["rmse"] for horizon, row in table.items()}


def _alarm_part(
    visits: list[real.Visit], split: dict[str, str], found: dict[str, Treatments]
) -> tuple[list[real.Visit], real.Replay, np.ndarray]:
    """The validation visits at the rates the served alarm policy was chosen at (15 min and
    5 min), every record known."""
    chosen = [v for v in visits if split[v.patient] == "validation"]
    chosen += [real.interpolate(v) for v in chosen]
    r = real.replay(chosen)
    return chosen, r, channels(r, [found[v.name] for v in chosen])


def alarm_frontier(visits: list[real.Visit], r: real.Replay, p_low: np.ndarray) -> dict[str, Any]:
    """The alarm policy the policy chooser would serve from this network's P(< 70) (raw: a
    calibration is monotone and leaves the choice alone), and the cheapest servable
    candidate that warned of 90 % of the events."""
    chosen = policy.choose([(visits, r, p_low)])
    ninety = [
        row
        for row in chosen["candidates"]
        if row["servable"] and (row["recall"] or 0.0) >= 0.9  # noqa: PLR2004
    ]
    cheapest = min(ninety, key=lambda row: row["false_per_day"] or 0.0) if ninety else None
    return {"served": {"policy": chosen["served"].name, **chosen["served_figures"]},
            "cheapest_90": cheapest}  # fmt: skip


SEEDS = (7, 1)  # 7: the shipped model's; a second to see how much a seed moves the figures


def ablation(
    data: Path, config: TrainConfig, hidden: int = 32, seeds: tuple[int, ...] = SEEDS
) -> dict[str, Any]:
    """Train the CGM-only and the widened network alike, per seed; validation RMSE per
    horizon (the training visits whose records are hidden are drawn once, from the first
    seed)."""
    visits = real.load_shanghai(data)
    split = real.splits(visits)
    found = visit_treatments(data, visits)
    train_r, train_c = _part(visits, split, "train", found, HIDDEN_SHARE, seeds[0])
    val_r, val_c = _part(visits, split, "validation", found, 0.0, seeds[0])
    alarm_visits, alarm_r, alarm_c = _alarm_part(visits, split, found)
    by_seed: dict[str, Any] = {}
    widened = (np.concatenate([train_r.x, train_c], axis=2), np.concatenate([val_r.x, val_c], 2))
    alarm_x = {False: alarm_r.x, True: np.concatenate([alarm_r.x, alarm_c], axis=2)}
    for seed in seeds:
        results: dict[str, Any] = {}
        for name, x_train, x_val in (
            ("cgm only", train_r.x, val_r.x),
            ("cgm + insulin and meals", *widened),
        ):
            seed_everything(seed, config.threads)  # the initial weights too
            wide = x_train.shape[2] > len(GLUCOSE.channels)
            model = WideGlucoseGRU(hidden=hidden) if wide else GlucoseGRU(hidden=hidden)
            train_t, val_t = real_train.tensors(train_r), real_train.tensors(val_r)
            train_t[0], val_t[0] = torch.from_numpy(x_train), torch.from_numpy(x_val)
            fitted = fit(model, real_train.loss, train_t, val_t, replace(config, seed=seed),
                         progress=False, describe=f"glucose ({name})")  # fmt: skip
            results[name] = {
                "epochs_run": fitted["epochs_run"],
                "best_val_loss": round(fitted["best_val_loss"], 4),
                "validation_rmse": _rmse(model, x_val, val_r),
                "validation_alarm": alarm_frontier(
                    alarm_visits, alarm_r, predict(model, alarm_x[wide])[1][:, 0]
                ),
            }
            if wide:  # the same network where nothing is recorded: it must still serve
                blind = np.concatenate([val_r.x, np.zeros_like(val_c)], axis=2)
                results[name + ", records hidden"] = {"validation_rmse": _rmse(model, blind, val_r)}
        by_seed[str(seed)] = results
    recorded = [v for v in visits if found[v.name].recorded]
    return {
        "evaluated_at": datetime.now(UTC).isoformat(),
        "data": real.SOURCE,
        "visits_with_records": f"{len(recorded)} of {len(visits)}",
        "validation_samples": len(val_r.now),
        "train_samples": len(train_r.now),
        "hidden_share_of_training_visits": round(HIDDEN_SHARE, 3),
        "config": {"epochs": config.epochs, "seeds": list(seeds), "hidden": hidden},
        "results": by_seed,
    }


def markdown(result: dict[str, Any]) -> str:
    seeds = ", ".join(map(str, result["config"]["seeds"]))
    lines = [
        "# Glucose forecast with insulin and meal records: an ablation on validation",
        "",
        f"Data: {result['data']}; visits recording insulin or meals: "
        f"{result['visits_with_records']}. The shipped network and training (up to "
        f"{result['config']['epochs']} epochs, the epoch chosen on validation; seeds {seeds}, "
        "7 being the shipped model's), the input widened by insulin units, meals and a "
        "'recorded' flag on the 5-min grid; a third of the training visits with their records "
        f"hidden. {result['validation_samples']:,} validation samples at the 15-, 5- and "
        "30-min rates pooled. Test patients are not read: nothing here serves.",
        "",
        "| validation RMSE mg/dL | seed | 15 min | 30 min | 45 min | 60 min |",
        "|---|---|---|---|---|---|",
    ]
    for seed, results in result["results"].items():
        for name, figures in results.items():
            rmse = figures["validation_rmse"]
            lines.append(
                f"| {name} | {seed} | {rmse['15']} | {rmse['30']} | {rmse['45']} | {rmse['60']} |"
            )
    alarms = [
        (seed, name, figures["validation_alarm"])
        for seed, results in result["results"].items()
        for name, figures in results.items()
        if "validation_alarm" in figures
    ]
    if alarms:
        lines += [
            "",
            "Hypoglycaemia warnings from each network's P(< 70 in 30 min), chosen as the served "
            "policy is (`models/glucose/policy.py`: the servable candidate that warned of the "
            f"most events within {policy.BUDGET_PER_DAY}/day false alarms), on the validation "
            "patients at 15 and 5 min pooled, every record known; and the servable candidate "
            "that warned of 90 % at the fewest false alarms:",
            "",
            "| validation alarms | seed | chosen within the budget | warned / events | "
            "false/day | median lead (min) | cheapest at >= 90 %: false/day |",
            "|---|---|---|---|---|---|---|",
        ]
        for seed, name, found in alarms:
            served, cheapest = found["served"], found["cheapest_90"]
            ninety = f"{cheapest['false_per_day']} ({cheapest['policy']})" if cheapest else "none"
            lines.append(
                f"| {name} | {seed} | {served['policy']} | {served['warned']} / "
                f"{served['events']} | {served['false_per_day']} | {served['median_lead_min']} "
                f"| {ninety} |"
            )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], reports: Path) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "glucose_treatments.json").write_text(json.dumps(result, indent=2) + "\n")
    path = reports / "glucose_treatments.md"
    path.write_text(markdown(result))
    return path
