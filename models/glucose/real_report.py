"""``bedside evaluate glucose --real``: the model on real held-out patients, its gate, its card.

Validation patients choose the alarm threshold and the **gate** (per horizon: serve the
model's forecast only where its RMSE beat AR2's and last value's; ``predicted_low`` from the
model only where its alarm warned of at least as many events as AR2's at no more false
alarms per day). Test patients choose nothing: their figures are reported per population
(T1D, T2D) and per sensor rate (15 min as recorded; 5 min interpolated; 30 min by dropping
readings).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streams.scoring.families import GLUCOSE_PROBABILITIES
from streams.scoring.manifest import Calibration

from ..metrics import isotonic
from ..nets import HORIZONS_MIN
from . import policy, real, real_eval

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
RATES = {"15min": None, "5min_interpolated": "dense", "30min": "sparse"}


def at_rate(visits: list[real.Visit], rate: str | None) -> list[real.Visit]:
    if rate == "dense":
        return [real.interpolate(v) for v in visits]
    if rate == "sparse":
        return [real.resample(v, 30) for v in visits]
    return visits


def choose(
    validation: list[tuple[list[real.Visit], real.Replay, np.ndarray, np.ndarray]],
    alarm_parts: tuple[int, ...] = (0, 1),
) -> dict[str, Any]:
    """The gate from the validation patients: forecasts over all rates pooled; the
    ``predicted_low`` policy (``policy.choose``) over the 15- and 5-min parts
    (``alarm_parts``) pooled, within the false-alarm budget, among the model's rules, AR2,
    plain CGM thresholds and their combinations."""
    chosen = policy.choose([(v, r, p[:, 0]) for v, r, _, p in (validation[i] for i in alarm_parts)])
    served: policy.Candidate = chosen["served"]
    rmse: dict[str, dict[str, float]] = {}
    blend: dict[str, dict[str, float]] = {}
    for k, horizon in enumerate(HORIZONS_MIN):
        errors: dict[str, list[np.ndarray]] = {"model": [], "ar2": [], "last": []}
        for _, r, f, _ in validation:
            known = ~np.isnan(r.future[:, k])
            truth = r.future[known, k]
            errors["model"].append(f[known, k] - truth)
            errors["ar2"].append(r.ar2[known, k] - truth)
            errors["last"].append(r.now[known] - truth)
        pooled = {m: np.concatenate(e) for m, e in errors.items()}
        rmse[str(horizon)] = {m: round(float(np.sqrt(np.mean(e**2))), 2) for m, e in pooled.items()}
        blend[str(horizon)] = best_blend(pooled["model"], pooled["ar2"])
    forecast_gate = [
        "model" if rmse[str(h)]["model"] < min(rmse[str(h)]["ar2"], rmse[str(h)]["last"]) else "ar2"
        for h in HORIZONS_MIN
    ]
    return {
        "threshold_p_low_30": (
            served if served.source == "model" else chosen["best_model"]
        ).threshold,
        "predicted_low_rule": (served if served.source == "model" else chosen["best_model"]).rule,
        "false_alarm_budget_per_day": chosen["budget_per_day"],
        "policy": served.name,
        "policy_validation": chosen["served_figures"],
        "better_unserved": chosen["better_unserved"],
        "policy_candidates": chosen["candidates"],
        "forecast": dict(zip(map(str, HORIZONS_MIN), forecast_gate, strict=True)),
        "predicted_low": served.source,
        "predicted_low_cgm_below": served.cgm_below if served.source == "model" else None,
        "validation_rmse": rmse,
        "validation_blend": blend,
    }


BLEND_WEIGHTS = np.linspace(0.0, 1.0, 21)


def best_blend(model_error: np.ndarray, ar2_error: np.ndarray) -> dict[str, float]:
    """The weight w (steps of 0.05) for which w * model + (1 - w) * AR2 has the lowest RMSE on
    these errors (the blend's error is the same mix of the two errors), and that RMSE."""
    rmse = [
        float(np.sqrt(np.mean((w * model_error + (1 - w) * ar2_error) ** 2))) for w in BLEND_WEIGHTS
    ]
    best = int(np.argmin(rmse))
    return {
        "model_weight": round(float(BLEND_WEIGHTS[best]), 2),
        "rmse": round(rmse[best], 2),
        "model_rmse": round(rmse[-1], 2),
    }


def fit_calibration(
    validation: list[tuple[list[real.Visit], real.Replay, np.ndarray, np.ndarray]],
) -> dict[str, Calibration]:
    """Each probability output's isotonic calibration on the validation patients, all sensor
    rates pooled (the stream meets them all), over the samples whose outcome is known."""
    fitted = {}
    for k, name in enumerate(GLUCOSE_PROBABILITIES):
        p = np.concatenate([probability[r.hypo_known, k] for _, r, _, probability in validation])
        y = np.concatenate([r.hypo[r.hypo_known, k] for _, r, _, _ in validation])
        raw, rate = isotonic(p, y)
        knots: dict[float, float] = {}
        for x, v in zip(raw, rate, strict=True):  # JSON-sized knots; rounding may merge two
            knots.setdefault(round(x, 6), round(v, 6))
        fitted[name] = Calibration(raw=list(knots), calibrated=list(knots.values()), samples=len(p))
    return fitted


def report(
    predict: Predict, data: Path, *, name: str, limit_patients: int | None = None
) -> dict[str, Any]:
    visits = real.load_shanghai(data)
    split = real.splits(visits)
    visits = real.limit(visits, split, limit_patients)
    train = real.replay([v for v in visits if split[v.patient] == "train"])
    base_rate = float(train.hypo[train.hypo_known, 0].mean())

    def replayed(part: str, rate: str | None, population: str | None = None) -> Any:
        mine = [
            v
            for v in visits
            if split[v.patient] == part and (population is None or v.population == population)
        ]
        mine = at_rate(mine, rate)
        r = real.replay(mine)
        forecast, probability = predict(r.x)
        return mine, r, forecast, probability

    validation = [replayed("validation", rate) for rate in RATES.values()]
    fitted = fit_calibration(validation)
    # the policy is chosen on the probabilities as they will serve: calibrated
    gate = choose([(v, r, f, real_eval.calibrated(fitted, p)) for v, r, f, p in validation])
    gate["calibration"] = {name: c.model_dump() for name, c in fitted.items()}
    personal = personal_figures(visits, split, predict, gate)
    figures: dict[str, Any] = {}
    for population in ("T1D", "T2D"):
        for label, rate in RATES.items():
            mine, r, forecast, raw = replayed("test", rate, population)
            if not len(r.now):
                continue
            probability = real_eval.calibrated(fitted, raw)
            figures.setdefault(population, {})[label] = real_eval.evaluate(
                mine,
                r,
                forecast,
                probability[:, 0],
                threshold=gate["threshold_p_low_30"],
                base_rate=base_rate,
                gate=[gate["forecast"][str(h)] for h in HORIZONS_MIN],
                alarm_source=gate["predicted_low"],
                rule=gate["predicted_low_rule"],
                personal=gate["personal"],
                cgm_below=gate["predicted_low_cgm_below"],
            )
            figures[population][label]["calibration_raw"] = real_eval.calibration(
                raw[:, 0], r, base_rate
            )
    return {
        "model": name,
        "personalisation": personal,
        "evaluated_at": datetime.now(UTC).isoformat(),
        "data": real.SOURCE,
        "split": {part: sorted(p for p, s in split.items() if s == part) for part in real.SPLITS},
        "constant_rate": round(base_rate, 4),
        "gate": gate,
        "test": figures,
    }


def personal_figures(
    visits: list[real.Visit], split: dict[str, str], predict: Predict, gate: dict[str, Any]
) -> dict[str, Any]:
    """The online per-patient bias (``personal``): it serves at the horizons where it
    lowered the validation patients' error at both the 15-min and the 5-min rate (sets
    ``gate["personal"]``). The same figures per population are reported beside (the stream
    does not know a patient's population, so the gate is the pooled one); test reports the
    30-min error by days of data seen, per population (15-min readings)."""
    validation = [v for v in visits if split[v.patient] == "validation"]
    rmse = _personal_rmse(validation, predict)
    helps = _helps(rmse)
    gate["personal"] = helps
    by_population: dict[str, Any] = {}
    test: dict[str, Any] = {}
    for population in ("T1D", "T2D"):
        theirs = [v for v in validation if v.population == population]
        if theirs:
            mine_rmse = _personal_rmse(theirs, predict)
            by_population[population] = {
                "patients": len({v.patient for v in theirs}),
                "validation_rmse": mine_rmse,
                "lowered_at": _helps(mine_rmse),
            }
        mine = [v for v in visits if split[v.patient] == "test" and v.population == population]
        if not mine:
            continue
        rt = real.replay(mine)
        f, _ = predict(rt.x)
        methods = {"model": f, "personal": real_eval.personalised(mine, rt, f)}
        test[population] = real_eval.by_day(mine, rt, methods, k=1)
    return {
        "validation_rmse": rmse,
        "used": helps,
        "validation_by_population": by_population,
        "test_rmse_30_by_day": test,
    }


def _personal_rmse(
    visits: list[real.Visit], predict: Predict
) -> dict[str, dict[str, dict[str, float]]]:
    """Per rate (15 and 5 min) and horizon, the RMSE of the model and of it adapted."""
    rmse: dict[str, dict[str, dict[str, float]]] = {}
    for label in ("15min", "5min_interpolated"):
        mine = at_rate(visits, RATES[label])
        r = real.replay(mine)
        forecast, _ = predict(r.x)
        adapted = real_eval.personalised(mine, r, forecast)
        rmse[label] = {}
        for k, horizon in enumerate(HORIZONS_MIN):
            known = ~np.isnan(r.future[:, k])
            rmse[label][str(horizon)] = {
                name: round(float(np.sqrt(np.mean((v[known, k] - r.future[known, k]) ** 2))), 2)
                for name, v in (("model", forecast), ("personal", adapted))
            }
    return rmse


def _helps(rmse: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The horizons at which the adaptation lowered the RMSE at every rate."""
    return [
        str(h)
        for h in HORIZONS_MIN
        if all(by_rate[str(h)]["personal"] < by_rate[str(h)]["model"] for by_rate in rmse.values())
    ]


def write(result: dict[str, Any], reports: Path, stem: str) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    path = reports / f"{stem}.md"
    path.write_text(markdown(result))
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def _personal_section(personal: dict[str, Any] | None) -> list[str]:
    """Whether the per-patient adaptation serves, and its test error by days seen."""
    if not personal:
        return []
    lines: list[str] = []
    lines += [
        "**Personalisation** (an online per-patient bias of the forecast, "
        "`streams/scoring/personal.py`, as the stream runs it): "
        + (
            f"**serves at {', '.join(personal['used'])} min**, where it lowered the "
            "validation RMSE at both rates"
            if personal["used"]
            else "**does not serve**: it lowered the validation RMSE at no horizon at both rates"
        )
        + " (validation 30 / 60 min, model vs personal: "
        + "; ".join(
            f"{rate} {v['30']['model']} vs {v['30']['personal']} / "
            f"{v['60']['model']} vs {v['60']['personal']} mg/dL"
            for rate, v in personal["validation_rmse"].items()
        )
        + "). Test RMSE at 30 min by days of data seen (15-min readings):",
        "",
        "| population | days seen | n | model | personal |",
        "|---|---|---|---|---|",
    ]
    for population, rows in personal["test_rmse_30_by_day"].items():
        for row in rows:
            lines.append(
                f"| {population} | {row['days_seen']} | {row['n']} | {row['model']} | "
                f"{row['personal']} |"
            )
    lines.append("")
    if personal.get("validation_by_population"):
        lines += [_by_population_line(personal["validation_by_population"]), ""]
    return lines


def _by_population_line(by_population: dict[str, Any]) -> str:
    parts = []
    for population, f in by_population.items():
        where = ", ".join(f["lowered_at"]) + " min" if f["lowered_at"] else "no horizon"
        figures = "; ".join(
            f"{rate} {v['30']['model']} vs {v['30']['personal']}"
            for rate, v in f["validation_rmse"].items()
        )
        parts.append(
            f"{population} ({f['patients']} validation patients): lowered at both rates at "
            f"{where} (30 min, model vs personal: {figures} mg/dL)"
        )
    return (
        "By population (the stream does not know a patient's diabetes type, so the pooled "
        "gate above serves everyone): " + "; ".join(parts) + "."
    )


def _policy_section(gate: dict[str, Any]) -> list[str]:
    """How the alarm policy was chosen, the served one beside the rules a clinic could run."""
    if "policy_candidates" not in gate:
        return []
    budget = gate["false_alarm_budget_per_day"]
    rows = gate["policy_candidates"]

    # per family of rules (each varies only in a threshold): the one that warns of the most
    # events within the budget, and the one that warns of 90 % at the fewest false alarms
    # (what reaching 90 % costs)
    families: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        families.setdefault(r.get("family", r["policy"]), []).append(r)
    shown = [r for r in rows if r["policy"] == "AR2"]
    for members in families.values():
        within = [m for m in members if (m["false_per_day"] or 0) <= budget]
        reach = [m for m in members if (m["recall"] or 0) >= 0.9]
        # a servable family's best within the budget is the served or the model's row
        servable = any(m["servable"] for m in members)
        picked = [max(within, key=lambda m: m["recall"] or 0)] if within and not servable else []
        picked += [min(reach, key=lambda m: m["false_per_day"] or 0)] if reach else []
        shown += [m for i, m in enumerate(picked) if m not in picked[:i]]
    model_rows = [r for r in rows if r["policy"].startswith("model") and " or " not in r["policy"]]
    served = gate["policy_validation"]
    lines = [
        "## The alarm policy, chosen on validation",
        "",
        f"Candidates scored on the validation patients' hypoglycaemia events at 15 and 5 min "
        f"pooled: the model's probability at {len(model_rows)} rule/threshold pairs, AR2, CGM "
        "thresholds and any-of combinations, and rules serving does not run: rate-of-change "
        "rules, linear projection, two-of votes, the model confirmed at two readings. Below, "
        "per family, the best within the budget and the cheapest that warned of 90 %. "
        "Served: the candidate serving can run that warned "
        f"of the most events within **{budget}/day** false alarms (then fewer false alarms, "
        f"then longer lead): warned {served.get('warned')}/{served.get('events')} "
        f"({_cell(served.get('recall'))}) at {_cell(served.get('false_per_day'))}/day, median "
        f"lead {_cell(served.get('median_lead_min'))} min.",
        "",
    ]
    if gate.get("better_unserved"):
        lines += [
            "**A rule serving cannot run did better within the budget**: "
            + "; ".join(
                f"{b['policy']} ({_cell(b['recall'])} at {_cell(b['false_per_day'])}/day)"
                for b in gate["better_unserved"]
            )
            + ".",
            "",
        ]
    lines += [
        "| validation: policy | warned / events | recall | false/day | median lead (min) |",
        "|---|---|---|---|---|",
    ]
    best_model = max(
        (r for r in model_rows if (r["false_per_day"] or 0) <= budget),
        key=lambda r: r["recall"] or 0,
        default=None,
    )
    first = [r for r in rows if r["policy"] == gate.get("policy")]
    first += [best_model] if best_model and best_model not in first else []
    for r in first + [r for r in shown if r not in first]:
        lines.append(
            f"| {r['policy']} | {r['warned']} / {r['events']} | {_cell(r['recall'])} | "
            f"{_cell(r['false_per_day'])} | {_cell(r['median_lead_min'])} |"
        )
    return [*lines, ""]


def _blend_line(blend: dict[str, dict[str, float]]) -> str:
    best = max(1 - b["rmse"] / b["model_rmse"] for b in blend.values())
    return (
        "**Blend** (validation, all rates pooled): the weight of the model against AR2 that "
        "minimises the RMSE, per horizon: "
        + "; ".join(
            f"{h} min {b['model_weight']:.2f} ({b['rmse']} vs the model's {b['model_rmse']} mg/dL)"
            for h, b in blend.items()
        )
        + f". The best blend lowers the model's validation RMSE by at most {best:.1%}: the gate "
        "serves the model or AR2 whole."
    )


def markdown(result: dict[str, Any]) -> str:
    gate = result["gate"]
    lines = [
        f"# {result['model']} on real CGM: held-out test patients",
        "",
        f"Data: {result['data']}. Split by patient (60/20/20 within each population, by "
        "hash); validation patients chose the alarm threshold and the gate, test patients "
        "chose nothing. Truth is the patient's later CGM reading. 5-min figures are on the "
        "test readings interpolated to 5 min with 2 mg/dL noise (no real 5-min data here); "
        "30-min figures drop readings. Decision support, not a diagnosis.",
        "",
        f"**Gate** (validation): forecast served from the model at "
        f"{[h for h, s in gate['forecast'].items() if s == 'model'] or 'no horizon'} min, "
        f"AR2 elsewhere; `predicted_low` from **{gate['predicted_low']}**"
        + (
            f", P(<70 in 30 min) >= {gate['threshold_p_low_30']}"
            + (
                " **while the CGM falls** (the 15-min rate the model reads is below 0)"
                if gate.get("predicted_low_rule") == "probability_falling"
                else ""
            )
            + (
                f" **or the CGM below {gate['predicted_low_cgm_below']:.0f} mg/dL**"
                if gate.get("predicted_low_cgm_below")
                else ""
            )
            if gate["predicted_low"] == "model"
            else ""
        )
        + ".",
        "",
    ]
    if gate.get("validation_blend"):
        lines += [_blend_line(gate["validation_blend"]), ""]
    if gate.get("calibration"):
        fitted = gate["calibration"]["p_low_30"]
        lines += [
            "**Calibration** (validation): P(<70) and P(<54) within 30 min are calibrated on the "
            f"validation patients' {fitted['samples']:,} samples of known outcome, all sensor "
            f"rates pooled (isotonic regression, {len(fitted['raw'])} knots for P(<70)); "
            "thresholds and the figures below are on the calibrated scale, as served. Each "
            "section's reliability table shows the test patients' bins before and after.",
            "",
        ]
    lines += _policy_section(gate)
    lines += _personal_section(result.get("personalisation"))
    for population, rates in result["test"].items():
        for rate, f in rates.items():
            lines += [
                f"## {population}, {rate}: {f['patients']} patients, {f['samples']} forecasts",
                "",
                "| RMSE mg/dL | " + " | ".join(real_eval.FORECASTS) + " |",
                "|---" * (len(real_eval.FORECASTS) + 1) + "|",
            ]
            for horizon, row in f["horizons"].items():
                best = min(row[m]["rmse"] or 1e9 for m in ("ar2", "last"))
                cells = [_cell(row[m]["rmse"]) for m in real_eval.FORECASTS]
                verdict = "" if (row["served"]["rmse"] or 1e9) <= best else " (served loses)"
                lines.append(f"| {horizon} min{verdict} | " + " | ".join(cells) + " |")
            lines += [
                "",
                "| alarm | alarms | events | warned | precision | false/day | median lead |",
                "|---|---|---|---|---|---|---|",
            ]
            for rule, a in f["alarms"].items():
                lines.append(
                    f"| {rule} | {a['alarms']} | {a['events']} | {a['warned']} | "
                    f"{_cell(a['precision'])} | {_cell(a['false_alarms_per_day'])} | "
                    f"{_cell(a['median_lead_min'])} |"
                )
            lines += _calibration_lines(f)
    return "\n".join(lines)


RELIABLE_N = 100  # a reliability bin is judged when it holds at least this many samples
RELIABLE_GAP = 0.05  # ... and is calibrated when predicted and observed differ by at most this


def worst_gap(reliability: list[dict[str, Any]]) -> float | None:
    """The largest |mean predicted - observed| over the bins of at least ``RELIABLE_N``."""
    gaps = [abs(b["mean_predicted"] - b["observed"]) for b in reliability if b["n"] >= RELIABLE_N]
    return round(max(gaps), 4) if gaps else None


def _calibration_lines(f: dict[str, Any]) -> list[str]:
    c, raw = f["calibration"], f.get("calibration_raw")
    lines = [
        "",
        f"P(<70 in 30 min), calibrated: mean {c['mean_predicted']:.3f} vs observed "
        f"{c['observed']:.3f}; Brier {c['brier']:.4f} vs constant rate "
        f"{c['brier_constant']:.4f}"
        + (" (model loses)" if c["brier"] >= c["brier_constant"] else "")
        + (f"; uncalibrated Brier {raw['brier']:.4f}" if raw else "")
        + ".",
        "",
        "| P bin | n | predicted | observed | uncalibrated: n | predicted | observed |",
        "|---|---|---|---|---|---|---|",
    ]
    before = {b["bin"]: b for b in raw["reliability"]} if raw else {}
    for b in c["reliability"]:
        r = before.pop(b["bin"], None)
        old = f"{r['n']} | {r['mean_predicted']:.3f} | {r['observed']:.3f}" if r else "— | — | —"
        lines.append(
            f"| {b['bin']} | {b['n']} | {b['mean_predicted']:.3f} | {b['observed']:.3f} | {old} |"
        )
    for name, r in before.items():
        lines.append(
            f"| {name} | — | — | — | {r['n']} | {r['mean_predicted']:.3f} | {r['observed']:.3f} |"
        )
    gap, gap_raw = worst_gap(c["reliability"]), worst_gap(raw["reliability"]) if raw else None
    lines += [
        "",
        f"Largest gap in a bin of >= {RELIABLE_N}: calibrated "
        + (f"{gap:.3f}" if gap is not None else "—")
        + (f", uncalibrated {gap_raw:.3f}" if gap_raw is not None else "")
        + (
            f" (target <= {RELIABLE_GAP}: {'met' if gap <= RELIABLE_GAP else 'not met'})"
            if gap is not None
            else ""
        )
        + ".",
        "",
    ]
    return lines


def evaluate_checkpoint(checkpoint_path: Path, reports: Path, data: Path) -> Path:
    """Evaluate a checkpoint trained on real CGM; writes ``glucose_real.{md,json}``."""
    from ..nets import GlucoseGRU
    from ..training import load_checkpoint
    from .evaluate import predict

    checkpoint = load_checkpoint(checkpoint_path)
    model = GlucoseGRU(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    limit = checkpoint["data"].get("limit_patients")
    result = report(
        lambda x: predict(model, x), data, name="glucose (real CGM)", limit_patients=limit
    )
    result["checkpoint_created_at"] = checkpoint["created_at"]
    return write(result, reports, "glucose_real")


def evaluate_shipped(model_dir: Path, reports: Path, data: Path) -> Path:
    """Evaluate a shipped model version exactly as it serves (its ONNX file through ONNX
    Runtime on the CPU): ``model_dir`` holds ``glucose/<version>/``, the newest is taken;
    writes ``glucose_real.{md,json}``."""
    from streams.scoring.service import ModelScoring
    from streams.settings import ScoringSettings

    scoring = ModelScoring(ScoringSettings(models=["glucose"], model_dir=model_dir, provider="cpu"))
    [model] = [m for m in scoring.serving_models() if m.role == "primary"]

    def predict(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = [model.run(x[start : start + 4096]) for start in range(0, len(x), 4096)]
        return (
            np.concatenate([o[0] for o in outputs]),
            np.concatenate([o[1] for o in outputs]),
        )

    result = report(predict, data, name=f"glucose {model.manifest.version} (as shipped, ONNX)")
    result["model_key"] = model.key
    return write(result, reports, "glucose_real")
