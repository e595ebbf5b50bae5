"""Forecast accuracy, Clarke error grid, time lag and event-based hypoglycaemia alarm scoring."""

from __future__ import annotations

import numpy as np

from ..metrics import AlarmScore
from .sim import STEP_MIN

LOW = 70.0
ALARM_HORIZON_STEPS = 30 // STEP_MIN
MIN_EVENT_STEPS = 3  # a hypoglycaemia event: true glucose < 70 for at least 15 min
REARM_STEPS = 30 // STEP_MIN  # an alarm episode ends after 30 min without alarming


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth)))


def clarke_zones(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Share of points per Clarke error grid zone (Clarke et al., Diabetes Care 1987)."""
    r, p = np.asarray(reference, float), np.asarray(predicted, float)
    zone = np.full(len(r), "B", dtype="<U1")
    a = ((r <= 70) & (p <= 70)) | (np.abs(p - r) <= 0.2 * r)
    e = ((r >= 180) & (p <= 70)) | ((r <= 70) & (p >= 180))
    c = ((r >= 70) & (r <= 290) & (p >= r + 110)) | (
        (r >= 130) & (r <= 180) & (p <= 7 / 5 * r - 182)
    )
    d = (
        ((r >= 240) & (p >= 70) & (p <= 180))
        | ((r <= 175 / 3) & (p >= 70) & (p <= 180))
        | ((r >= 175 / 3) & (r <= 70) & (p >= 6 / 5 * r))
    )
    zone[d] = "D"
    zone[c] = "C"
    zone[e] = "E"
    zone[a] = "A"
    return {z: float(np.mean(zone == z)) for z in "ABCDE"}


def time_lag_minutes(
    predicted: np.ndarray, bg: np.ndarray, steps: np.ndarray, horizon_steps: int
) -> float:
    """How far behind the truth a forecast runs: horizon minus the best-matching shift."""
    errors = []
    for k in range(0, horizon_steps + 1):
        index = steps + k
        ok = index < len(bg)
        errors.append(rmse(predicted[ok], bg[index[ok]]))
    return float((horizon_steps - int(np.argmin(errors))) * STEP_MIN)


def hypo_events(bg: np.ndarray) -> list[int]:
    """Onset steps of true hypoglycaemia events (< 70 for >= 15 min; 30 min apart)."""
    below = bg < LOW
    onsets, i, last_end = [], 0, -(10**9)
    while i < len(below):
        if below[i]:
            j = i
            while j < len(below) and below[j]:
                j += 1
            if j - i >= MIN_EVENT_STEPS:
                if i - last_end > REARM_STEPS:
                    onsets.append(i)
                last_end = j
            i = j
        else:
            i += 1
    return onsets


def score_alarms(alarm_steps: np.ndarray, bg: np.ndarray, first: int, last: int) -> AlarmScore:
    """Score one patient's alarm times against true events in steps [first, last).

    Alarms less than 30 min apart form one episode. An episode is true when a true event
    starts during it or within 30 min of its last alarm, or the true glucose is < 70 at one
    of its alarms. An event is
    detected when an alarm fires in the 30 min before its onset (lead = onset - first such
    alarm); an alarm at the onset or later is not an early warning.
    """
    events = [o for o in hypo_events(bg) if first + ALARM_HORIZON_STEPS <= o < last]
    alarms = np.sort(alarm_steps[(alarm_steps >= first) & (alarm_steps < last)])
    episodes: list[list[int]] = []  # [first alarm, last alarm] of each episode
    for step in alarms:
        if episodes and step - episodes[-1][1] <= REARM_STEPS:
            episodes[-1][1] = int(step)
        else:
            episodes.append([int(step), int(step)])
    onsets = np.array(hypo_events(bg))
    true = 0
    for start, end in episodes:
        ahead = onsets[(onsets >= start) & (onsets <= end + ALARM_HORIZON_STEPS)]
        inside = alarms[(alarms >= start) & (alarms <= end)]
        if len(ahead) or (bg[inside] < LOW).any():
            true += 1
    detected, leads = 0, []
    for onset in events:
        before = alarms[(alarms >= onset - ALARM_HORIZON_STEPS) & (alarms < onset)]
        if len(before):
            detected += 1
            leads.append(float((onset - before[0]) * STEP_MIN))
    days = (last - first) * STEP_MIN / 1440
    return AlarmScore(len(episodes), true, len(events), detected, days, leads)
