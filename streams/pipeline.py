"""What happens to one patient's new observations: window, scores, alerts, outputs.

Pure with respect to I/O (the agent loads and stores windows and sends the outputs), so it
is tested without a broker and reused by the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .alerts.policy import transitions
from .rules.glucose import GlucoseTargets
from .schemas.observation import Observation
from .scoring.base import PatientProfile, Score, Scorer
from .scoring.rules import default_scorers
from .settings import StreamSettings
from .sinks.lines import escape_tag, observation_line
from .windows.patient import Applied, PatientWindow


@dataclass
class PatientOutput:
    window: PatientWindow
    applied: dict[Applied, int]
    risk: bytes | None = None  # the risk event (JSON), when anything was inserted
    alerts: list[bytes] = field(default_factory=list)  # alert events (JSON)
    lines: list[str] = field(default_factory=list)  # line protocol: observations, scores, alerts


def risk_lines(patient_id: str, t_ms: int, scores: list[Score]) -> list[str]:
    pid = escape_tag(patient_id)
    return [
        f"risk,patient_id={pid},score={escape_tag(s.name)} value={float(s.value)!r} {t_ms}"
        for s in scores
        if s.value is not None
    ]


def alert_line(event: dict[str, Any], t_ms: int) -> str:
    state = 1 if event["state"] == "open" else 0
    return (
        f"alerts,patient_id={escape_tag(event['patient_id'])},kind={event['kind']},"
        f'severity={event["severity"]} open={state}i,alert_id="{event["alert_id"]}" {t_ms}'
    )


class PatientPipeline:
    """Applies observations to a window and derives scores, alerts and output records."""

    def __init__(self, settings: StreamSettings, scorers: list[Scorer] | None = None) -> None:
        self.settings = settings
        self.scorers: list[Scorer] = (
            scorers
            if scorers is not None
            else list(default_scorers(settings.news2_max_age_s * 1000))
        )
        self.lateness_ms = settings.allowed_lateness_s * 1000
        self._scale2 = frozenset(settings.spo2_scale2_patients)

    def profile(self, patient_id: str) -> PatientProfile:
        targets = self.settings.glucose_targets.get(patient_id)
        return PatientProfile(
            spo2_scale=2 if patient_id in self._scale2 else 1,
            glucose=GlucoseTargets(**targets.model_dump()) if targets else GlucoseTargets(),
        )

    def process(
        self, patient_id: str, window: PatientWindow | None, observations: list[Observation]
    ) -> PatientOutput:
        """Apply a batch of one patient's observations; evaluate alerts at every reading."""
        window = window or PatientWindow(patient_id)
        applied = dict.fromkeys(Applied, 0)
        output = PatientOutput(window, applied)
        profile = self.profile(patient_id)
        events: list[dict[str, Any]] = []
        ordered = sorted(observations, key=lambda o: o.effective_at)
        reacting: set[int] = set()  # scorers touched by the current event time
        fresh: dict[int, Score | None] = {}  # scores of the window as it is now
        for index, observation in enumerate(ordered):
            outcome = window.apply(
                observation,
                allowed_lateness_ms=self.lateness_ms,
                max_vital_samples=self.settings.max_vital_samples,
            )
            applied[outcome] += 1
            if outcome is not Applied.DUPLICATE:  # late ones are still written to InfluxDB
                output.lines.append(observation_line(observation))
            if outcome is Applied.INSERTED:
                fresh.clear()
                reacting.update(i for i, s in enumerate(self.scorers) if s.reacts_to(observation))
            following = ordered[index + 1] if index + 1 < len(ordered) else None
            if reacting and (
                following is None or following.effective_at != observation.effective_at
            ):
                # evaluated at every event time (a vitals set or BP panel counts once), so
                # batch boundaries cannot hide a brief low
                for i in sorted(reacting):
                    fresh[i] = self.scorers[i].score(window, profile)
                scored = [s for i in sorted(reacting) if (s := fresh[i])]
                for event in transitions(window, scored, profile):
                    events.append(event)
                    output.lines.append(alert_line(event, window.watermark))
                reacting.clear()
        if not applied[Applied.INSERTED]:
            return output
        for i, scorer in enumerate(self.scorers):
            if i not in fresh:
                fresh[i] = scorer.score(window, profile)
        scores = [s for i in range(len(self.scorers)) if (s := fresh[i])]
        t_ms = window.watermark
        output.lines.extend(risk_lines(patient_id, t_ms, scores))
        output.risk = orjson.dumps(
            {
                "patient_id": patient_id,
                "event_time": datetime.fromtimestamp(t_ms / 1000, tz=UTC).isoformat(),
                "scores": [s.as_dict() for s in scores],
                "inputs": window.summary(),
            }
        )
        output.alerts = [orjson.dumps(event) for event in events]
        return output
