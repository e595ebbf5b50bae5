"""Hypoglycaemia events and alarm scoring on reading times (any sensor rate, with gaps).

The simulated evaluation scores on a regular 5-minute grid (``metrics.score_alarms``); real
sensors read every 5 or 15 minutes and skip readings, so here everything is in minutes:

- an **event** is a run of CGM readings < 70 mg/dL lasting at least 15 min, each reading
  standing for its sensor's interval (3 readings at 5 min, 1 at 15 min); events less than
  30 min apart are one;
- alarms less than 30 min apart are one **episode**; it is true when an event starts during
  it or within 30 min of its last alarm, or the CGM is already < 70 at one of its alarms;
- an event is **warned** when an alarm fired 0-30 min before its onset (the lead); false
  alarms are counted per day of monitored time (first to last reading of each visit).
"""

from __future__ import annotations

import numpy as np

from ..metrics import AlarmScore

LOW = 70.0
HORIZON_MIN = 30.0
MIN_EVENT_MIN = 15.0
REARM_MIN = 30.0


def interval_min(times_min: np.ndarray) -> float:
    """The sensor's interval: the median spacing of its readings."""
    return float(np.median(np.diff(times_min))) if len(times_min) > 1 else 5.0


def hypo_onsets(times_min: np.ndarray, cgm: np.ndarray) -> list[float]:
    """Onset times of events (see the module docstring)."""
    step = interval_min(times_min)
    below = cgm < LOW
    onsets: list[float] = []
    last_end = -np.inf
    i = 0
    while i < len(below):
        if not below[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(below) and below[j + 1] and times_min[j + 1] - times_min[j] <= 2 * step:
            j += 1
        if (j - i + 1) * step >= MIN_EVENT_MIN:
            if times_min[i] - last_end > REARM_MIN:
                onsets.append(float(times_min[i]))
            last_end = float(times_min[j])
        i = j + 1
    return onsets


def score_visit(times_min: np.ndarray, cgm: np.ndarray, alarm_times_min: np.ndarray) -> AlarmScore:
    """One visit's alarms (times at which a rule fired) against its events."""
    onsets = np.array(hypo_onsets(times_min, cgm))
    first = times_min[0] + HORIZON_MIN  # an event this early could not have been warned
    events = onsets[onsets >= first] if len(onsets) else onsets
    alarms = np.sort(alarm_times_min)
    below_at = dict(zip(times_min.tolist(), (cgm < LOW).tolist(), strict=True))
    episodes: list[list[float]] = []
    for t in alarms:
        if episodes and t - episodes[-1][1] <= REARM_MIN:
            episodes[-1][1] = float(t)
        else:
            episodes.append([float(t), float(t)])
    true = 0
    for start, end in episodes:
        ahead = onsets[(onsets >= start) & (onsets <= end + HORIZON_MIN)] if len(onsets) else []
        inside = alarms[(alarms >= start) & (alarms <= end)]
        if len(ahead) or any(below_at.get(float(t), False) for t in inside):
            true += 1
    warned, leads = 0, []
    for onset in events:
        before = alarms[(alarms >= onset - HORIZON_MIN) & (alarms < onset)]
        if len(before):
            warned += 1
            leads.append(float(onset - before[0]))
    days = float(times_min[-1] - times_min[0]) / 1440
    return AlarmScore(len(episodes), true, len(events), warned, days, leads)
