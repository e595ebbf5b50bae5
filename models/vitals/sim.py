"""A documented cohort generator of ward vital signs with deterioration episodes.

Each simulated adult inpatient has personal baselines (a COPD-like 10 % with low SpO2 and a
raised respiratory rate), a circadian rhythm, slow physiological fluctuation (AR(1) per
hour), measurement noise and rounding, missing readings and artefacts (SpO2 probe drops,
movement tachycardia). Observation sets come 4-hourly (1-hourly for a fifth of patients) and
every hour or two once the last set's NEWS2 is 5 or more, as the RCP 2017 NEWS2 chart asks.

35 % of patients deteriorate: from an onset, their physiology drifts over 6-16 h towards one
of three patterns until the *event* (rapid-response call / ICU transfer), after which their
ward data end. The event falls anywhere from 2 h after admission to the end of the stay, so
some patients arrive already deteriorating (onset before admission). 30 % of the others
have a transient, resolving disturbance (pain, a fever that settles) of about half that
size, so "abnormal" does not mean "deteriorating".

| pattern (share) | heart rate | resp. rate | SpO2 | systolic BP | temperature | other |
|---|---|---|---|---|---|---|
| sepsis-like (40 %) | +35 | +10 | -4 | -35 | +1.8 (20 %: -1.0) | new confusion late |
| respiratory (35 %) | +20 | +14 | -12 | 0 | +0.5 | oxygen started < 91 % |
| hypovolaemic (25 %) | +45 | +6 | -2 | -45 | 0 | confusion late |

Magnitudes are at the event, each scaled by a per-patient factor 0.7-1.3. Calibration
sources (rough, order-of-magnitude): Churpek et al., Chest 2012 (respiratory and heart rate
rise over the 8-12 h before ward cardiac arrest); Kause et al., Resuscitation 2004
(abnormal vital signs in the 8 h before most serious adverse events); Singer et al., JAMA
2016, Sepsis-3 qSOFA (RR >= 22, SBP <= 100, altered mentation); ATLS haemorrhagic shock
classes (HR > 100-120 with falling SBP); Degaute et al., Hypertension 1991 (circadian
amplitude of heart rate and blood pressure). These are simulated patients, not real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HOUR_MIN = 60
CODES = {
    "heart_rate": "8867-4",
    "respiratory_rate": "9279-1",
    "spo2": "59408-5",
    "systolic_bp": "8480-6",
    "temperature": "8310-5",
    "consciousness": "67775-7",
    "o2_flow": "3151-8",
}
PATTERNS = {
    "sepsis": {
        "heart_rate": 35,
        "respiratory_rate": 10,
        "spo2": -4,
        "systolic_bp": -35,
        "temperature": 1.8,
    },
    "respiratory": {
        "heart_rate": 20,
        "respiratory_rate": 14,
        "spo2": -12,
        "systolic_bp": 0,
        "temperature": 0.5,
    },
    "hypovolaemic": {
        "heart_rate": 45,
        "respiratory_rate": 6,
        "spo2": -2,
        "systolic_bp": -45,
        "temperature": 0.0,
    },
}
PATTERN_SHARE = (("sepsis", 0.40), ("respiratory", 0.35), ("hypovolaemic", 0.25))
SIGNALS = ("heart_rate", "respiratory_rate", "spo2", "systolic_bp", "temperature")
FLUCTUATION_SD = {
    "heart_rate": 4.0,
    "respiratory_rate": 1.2,
    "spo2": 0.8,
    "systolic_bp": 7.0,
    "temperature": 0.15,
}
NOISE_SD = {
    "heart_rate": 2.0,
    "respiratory_rate": 1.0,
    "spo2": 0.8,
    "systolic_bp": 5.0,
    "temperature": 0.1,
}
CIRCADIAN = {
    "heart_rate": 6.0,
    "respiratory_rate": 0.8,
    "spo2": 0.0,
    "systolic_bp": 8.0,
    "temperature": 0.3,
}


@dataclass
class SimulatedPatient:
    index: int
    minutes: int  # length of the ward stay simulated (or until the event)
    pattern: str | None  # deterioration pattern, or None
    onset_min: int | None
    event_min: int | None
    # (minute, signal, value) observations in time order
    observations: list[tuple[int, str, float]] = field(default_factory=list)


def _progress(t: np.ndarray, onset: float, duration: float) -> np.ndarray:
    return np.clip((t - onset) / duration, 0, 1) ** 1.5


def _hourly_state(rng: np.random.Generator, copd: bool, hours: np.ndarray) -> dict[str, np.ndarray]:
    """Each signal's hourly level without events: a personal baseline, AR(1) fluctuation
    and a circadian swing (the random draws in the order ``simulate`` always made them)."""
    base = {
        "heart_rate": np.clip(rng.normal(80, 10), 55, 105),
        "respiratory_rate": np.clip(rng.normal(19 if copd else 16, 2), 11, 24),
        "spo2": np.clip(rng.normal(90 if copd else 96.5, 1.5), 86, 99.5),
        "systolic_bp": np.clip(rng.normal(128, 16), 95, 175),
        "temperature": rng.normal(36.8, 0.25),
    }
    shift = rng.uniform(0, 24)
    state = {}
    for s in SIGNALS:
        ar = np.zeros(len(hours))
        shocks = rng.normal(0, FLUCTUATION_SD[s] * np.sqrt(1 - 0.8**2), len(hours))
        for h in range(1, len(hours)):
            ar[h] = 0.8 * ar[h - 1] + shocks[h]
        circadian = CIRCADIAN[s] * np.sin(2 * np.pi * (hours - 10 + shift * 0.1) / 24)
        state[s] = base[s] + ar + circadian
    return state


def simulate(index: int, days: int, seed: int) -> SimulatedPatient:
    """One patient's ward stay of up to ``days``; deterministic for (seed, index)."""
    rng = np.random.default_rng([seed, index])
    minutes = days * 24 * HOUR_MIN
    copd = rng.random() < 0.10
    hours = np.arange(minutes // HOUR_MIN + 2)
    state = _hourly_state(rng, copd, hours)

    pattern, onset, event = None, None, None
    effects = {s: np.zeros(len(hours)) for s in SIGNALS}
    confusion_from = None
    if rng.random() < 0.35:
        pattern = str(rng.choice([p for p, _ in PATTERN_SHARE], p=[w for _, w in PATTERN_SHARE]))
        duration = rng.uniform(6, 16) * HOUR_MIN
        # some arrive already deteriorating: the event can come at any time of the stay from
        # 2 h on, so a short history says nothing about risk (as in real admissions)
        event = int(rng.uniform(2 * HOUR_MIN, minutes))
        onset = int(event - duration)
        scale = rng.uniform(0.7, 1.3)
        shape = _progress(hours * HOUR_MIN, onset, duration)
        for s, size in PATTERNS[pattern].items():
            if s == "temperature" and pattern == "sepsis" and rng.random() < 0.2:
                size = -1.0
            effects[s] = size * scale * shape
        if pattern != "respiratory" and rng.random() < 0.6:
            confusion_from = onset + 0.8 * duration
    elif rng.random() < 0.30:  # a transient, resolving disturbance
        kind = str(rng.choice([p for p, _ in PATTERN_SHARE]))
        start = rng.uniform(6 * HOUR_MIN, minutes - 6 * HOUR_MIN)
        length = rng.uniform(4, 10) * HOUR_MIN
        t = hours * HOUR_MIN
        bump = np.clip(np.sin(np.pi * (t - start) / length), 0, None) * (
            (t > start) & (t < start + length)
        )
        for s, size in PATTERNS[kind].items():
            effects[s] = 0.5 * size * rng.uniform(0.7, 1.3) * bump
    stop = event if event is not None else minutes

    def value_at(signal: str, minute: float) -> float:
        h = minute / HOUR_MIN
        i = min(int(h), len(hours) - 2)
        w = h - i
        level = (1 - w) * (state[signal][i] + effects[signal][i]) + w * (
            state[signal][i + 1] + effects[signal][i + 1]
        )
        return float(level + rng.normal(0, NOISE_SD[signal]))

    patient = SimulatedPatient(index, stop, pattern, onset, event)
    hourly = rng.random() < 0.2
    on_oxygen = copd and rng.random() < 0.5
    t = float(rng.uniform(0, 4 * HOUR_MIN))
    while t < stop:
        minute = int(t)
        values = {s: value_at(s, t) for s in SIGNALS}
        if on_oxygen:
            values["spo2"] += 3
        if pattern == "respiratory" and values["spo2"] < 91:
            on_oxygen = True
        if rng.random() < 0.02:
            values["spo2"] -= rng.uniform(5, 15)  # probe artefact
        if rng.random() < 0.01:
            values["heart_rate"] += rng.uniform(30, 50)  # movement
        for s, p_taken in (
            ("heart_rate", 0.97),
            ("respiratory_rate", 0.9),
            ("spo2", 0.95),
            ("systolic_bp", 0.95),
            ("temperature", 0.85),
        ):
            if rng.random() < p_taken:
                patient.observations.append((minute, s, _rounded(s, values[s])))
        if rng.random() < 0.8:
            confused = confusion_from is not None and t >= confusion_from
            patient.observations.append((minute, "consciousness", 1.0 if confused else 0.0))
        patient.observations.append((minute, "o2_flow", 2.0 if on_oxygen else 0.0))
        worried = _rough_news2(values) >= 5
        gap = 60 if (hourly or worried) else 240
        t += gap * rng.uniform(0.85, 1.15)
    return patient


def _rounded(signal: str, value: float) -> float:
    if signal == "temperature":
        return round(min(max(value, 33.0), 42.0), 1)
    if signal == "spo2":
        return float(min(max(round(value), 60), 100))
    if signal == "respiratory_rate":
        return float(max(4, 2 * round(value / 2)))  # counted over 30 s
    return float(max(20, round(value)))


def _rough_news2(v: dict[str, float]) -> int:
    """The nurse's rough NEWS2 that sets the observation frequency (not the scored one)."""
    rr, spo2, sbp, hr, temp = (
        v["respiratory_rate"],
        v["spo2"],
        v["systolic_bp"],
        v["heart_rate"],
        v["temperature"],
    )
    score = 3 if rr <= 8 or rr >= 25 else 2 if rr >= 21 else 1 if rr <= 11 else 0
    score += 3 if spo2 <= 91 else 2 if spo2 <= 93 else 1 if spo2 <= 95 else 0
    score += 3 if sbp <= 90 or sbp >= 220 else 2 if sbp <= 100 else 1 if sbp <= 110 else 0
    score += 3 if hr <= 40 or hr >= 131 else 2 if hr >= 111 else 1 if hr <= 50 or hr >= 91 else 0
    score += 3 if temp <= 35 else 2 if temp >= 39.1 else 1 if temp <= 36 or temp >= 38.1 else 0
    return score
