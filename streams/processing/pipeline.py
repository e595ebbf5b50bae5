"""What happens to one patient's new observations: window, scores, alerts, outputs.

Pure with respect to I/O (the agent loads and stores windows and sends the outputs), so it
is tested without a broker and reused by the benchmark. In two steps when models are
loaded: ``process`` applies the observations, runs the rules at every event time and lists
the model inputs (one per model whose signals changed, at the latest reading); the caller
scores them — batched across patients — and ``finish`` turns the model outputs into scores,
model-driven alerts and the patient's risk event. Without models ``process`` finishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..access.audit import seal
from ..access.signing import Keys
from ..alerts import quality
from ..alerts.lifecycle import FAULT_KIND, Finding, Lifecycle
from ..alerts.policy import lifecycle, render, stale_at, stale_conditions, transitions
from ..patients import PatientDirectory
from ..rules.glucose import GlucoseTargets
from ..schemas.observation import Observation
from ..scoring import explain
from ..scoring.base import PatientProfile, Score, Scorer
from ..scoring.families import ModelRequest, ServingModel
from ..scoring.rule_scorers import default_scorers
from ..settings import StreamSettings
from ..sinks.lines import escape_tag, observation_line
from ..timefmt import iso
from ..windows.patient import CGM_CODE, Applied, PatientWindow

DEFAULT_PROFILE = PatientProfile()
QUARANTINE_CLOSED = (
    "Closed: this patient's stored state was quarantined, so this alarm is no longer "
    "tracked. A monitoring fault alarm is open; review the patient by hand."
)


@dataclass
class PatientOutput:
    window: PatientWindow
    applied: dict[Applied, int]
    risk: bytes | None = None  # the risk event (JSON), when anything was inserted
    alerts: list[bytes] = field(default_factory=list)  # alert events (JSON)
    lines: list[str] = field(default_factory=list)  # line protocol: observations, scores, alerts
    requests: list[ModelRequest] = field(default_factory=list)  # to score before ``finish``
    rule_scores: list[Score] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    profile: PatientProfile = field(default_factory=PatientProfile)
    quality: list[dict[str, Any]] = field(default_factory=list)  # alarm-quality judgements
    cgm_inserted: int = 0


def risk_lines(patient_id: str, t_ms: int, scores: list[Score]) -> list[str]:
    pid = escape_tag(patient_id)
    return [
        f"risk,patient_id={pid},score={escape_tag(s.name)} value={float(s.value)!r} {t_ms}"
        for s in scores
        if s.value is not None
    ]


def alert_line(event: dict[str, Any], t_ms: int) -> str:
    """An alarm transition as an audit point (one per transition, event time)."""
    active = 0 if event["state"] == "resolved" else 1
    return (
        f"alerts,patient_id={escape_tag(event['patient_id'])},kind={event['kind']},"
        f"severity={event['severity']},transition={event['transition']} open={active}i,"
        f'level={event["level"]}i,state="{event["state"]}",alert_id="{event["alert_id"]}" {t_ms}'
    )


class PatientPipeline:
    """Applies observations to a window and derives scores, alerts and output records."""

    def __init__(
        self,
        settings: StreamSettings,
        scorers: list[Scorer] | None = None,
        models: Sequence[ServingModel] = (),
        keys: Keys | None = None,
        patients: PatientDirectory | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys or Keys.random()
        self.scorers: list[Scorer] = (
            scorers
            if scorers is not None
            else list(default_scorers(settings.news2_max_age_s * 1000))
        )
        self.lateness_ms = settings.allowed_lateness_s * 1000
        self.vitals_stale_ms = settings.vitals_stale_s * 1000
        # every per-patient setting, keyed as windows are (pseudonyms when ids are)
        self.patients = patients or PatientDirectory.from_settings(settings)
        self.set_models(models)

    def set_models(self, models: Sequence[ServingModel]) -> None:
        """The models to score with (a reload swaps them between batches)."""
        self.models = list(models)
        self.model_kinds = frozenset(m.family.alert_kind for m in self.models if m.drives_alarm)

    def profile(self, patient_id: str) -> PatientProfile:
        own = self.patients.own(patient_id)
        if own is None:
            return DEFAULT_PROFILE  # most patients: nothing of their own
        targets, quiet = own.glucose_targets, own.quiet_hours
        return PatientProfile(
            spo2_scale=own.spo2_scale or 1,
            glucose=GlucoseTargets(**targets.model_dump()) if targets else GlucoseTargets(),
            quiet=quiet.contains if quiet else None,
            utc_offset=own.utc_offset_minutes if own.tz else None,
        )

    def process(
        self,
        patient_id: str,
        window: PatientWindow | None,
        observations: list[Observation],
        *,
        arrived_at: int | None = None,
    ) -> PatientOutput:
        """Apply a batch of one patient's observations; evaluate alerts at every reading.

        ``arrived_at``: wall-clock ms of the batch, from which ticks advance patient time."""
        window = window or PatientWindow(patient_id)
        if arrived_at is not None:
            window.arrived_at = max(window.arrived_at, arrived_at)
        applied = dict.fromkeys(Applied, 0)
        output = PatientOutput(window, applied)
        profile = self.profile(patient_id)
        events: list[dict[str, Any]] = []
        ordered = sorted(observations, key=lambda o: o.effective_at)
        reacting: set[int] = set()  # scorers touched by the current event time
        fresh: dict[int, Score | None] = {}  # scores of the window as it is now
        inserted: list[Observation] = []
        lateness, max_samples = self.lateness_ms, self.settings.max_vital_samples
        lines = output.lines
        for index, observation in enumerate(ordered):
            t_ms = int(observation.effective_at.timestamp() * 1000)
            outcome = window.apply_value(
                observation.code,
                observation.kind,
                t_ms,
                float(observation.value),
                allowed_lateness_ms=lateness,
                max_vital_samples=max_samples,
            )
            applied[outcome] += 1
            if outcome is not Applied.DUPLICATE:  # late ones are still written to InfluxDB
                lines.append(observation_line(observation, t_ms))
            if outcome is Applied.INSERTED:
                inserted.append(observation)
                if observation.code == CGM_CODE:
                    output.cgm_inserted += 1
                    window.note_offset(t_ms, observation.utc_offset_min)
                    self._judge(output, observation, t_ms)
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
                at = t_ms // 1000 * 1000  # the window's resolution: whole seconds
                for event in transitions(
                    window, scored, profile, self.model_kinds, self.vitals_stale_ms, now=at
                ):
                    self._record(output, event, events, at)
                reacting.clear()
        if not applied[Applied.INSERTED]:
            return output
        for i, scorer in enumerate(self.scorers):
            if i not in fresh:
                fresh[i] = scorer.score(window, profile)
        output.rule_scores = [s for i in range(len(self.scorers)) if (s := fresh[i])]
        output.events = events
        output.profile = profile
        families = {m.family.name for m in self.models if any(map(m.family.reacts_to, inserted))}
        for model in self.models:
            if model.family.name in families and model.family.ready(window):
                output.requests.append(ModelRequest(model, window, profile))
        if not output.requests:
            self.finish(output, [])
        return output

    def finish(self, output: PatientOutput, results: Sequence[list[np.ndarray] | None]) -> None:
        """Model scores (``results`` in ``output.requests`` order; None = not scored),
        model-driven alerts, the risk event and the score lines."""
        window, profile = output.window, output.profile
        model_scores = []
        for request, result in zip(output.requests, results, strict=True):
            if result is None:
                continue
            model = request.model
            score = model.family.to_score(
                result, model.manifest, window, model.score_name, request.x
            )
            if model.drives_alarm and model.family.alarm_holds(score, profile):
                # why: only for scores that alert, so the stream pays for it rarely
                x = request.x if request.x is not None else model.family.input(window, profile)
                if x is not None:
                    score.details["drivers"] = explain.drivers(model.family.name, x, model.run)
            model_scores.append(score)
        primary = [s for s in model_scores if not s.name.endswith("_shadow")]
        events = output.events
        if primary:
            for event in transitions(
                window, primary, profile, self.model_kinds, self.vitals_stale_ms
            ):
                self._record(output, event, events, window.watermark)
        scores = output.rule_scores + model_scores
        t_ms = window.watermark
        output.lines.extend(risk_lines(window.patient_id, t_ms, scores))
        output.risk = orjson.dumps(
            {
                "patient_id": window.patient_id,
                "event_time": iso(t_ms),
                "scores": [s.as_dict() for s in scores],
                "inputs": window.summary(),
            }
        )
        output.alerts = seal(self.keys.audit, window, events)

    def _record(
        self,
        output: PatientOutput,
        event: dict[str, Any],
        events: list[dict[str, Any]],
        t_ms: int,
    ) -> None:
        events.append(event)
        output.lines.append(alert_line(event, t_ms))
        if event["kind"] == "predicted_low" and event["transition"] == "opened":
            quality.on_prediction(output.window.predictions, t_ms)

    def _judge(self, output: PatientOutput, observation: Observation, t_ms: int) -> None:
        window = output.window
        t = t_ms // 1000 * 1000
        judgements, window.cgm_low = quality.on_cgm(
            window.predictions,
            window.recent_predictions,
            window.cgm_low,
            t,
            float(observation.value),
        )
        for judgement in judgements:
            output.quality.append(judgement)
            output.lines.append(quality.quality_line(window.patient_id, "predicted_low", judgement))

    # -- time and care-team actions (no observations) -------------------------------------
    @staticmethod
    def patient_time(window: PatientWindow, wall_ms: int) -> int:
        """The patient's clock: its newest event time plus wall time since that data came,
        so live and replayed streams alike age their alarms by real elapsed time."""
        return window.watermark + max(0, wall_ms - window.arrived_at)

    def _control_output(self, window: PatientWindow, events: list[dict[str, Any]]) -> PatientOutput:
        output = PatientOutput(window, dict.fromkeys(Applied, 0))
        output.alerts = seal(self.keys.audit, window, [render(e) for e in events])
        output.lines = [alert_line(e, e["event_time"]) for e in events]
        return output

    def tick_due(self, window: PatientWindow) -> int | None:
        """The wall-clock ms from which a tick may change ``window``: 0 (every tick) while an
        alarm is open or a condition is pending; else when its data would go stale; None
        when only new data can change it (it has sent nothing a tick watches)."""
        if window.alarms or any(any(bits) for bits in window.alarm_history.values()):
            return 0
        stale = stale_at(window, self.vitals_stale_ms)
        if stale is None:
            return None
        # patient time = watermark + (wall - arrived_at): see patient_time
        return window.arrived_at + max(0, stale - window.watermark)

    def tick(self, window: PatientWindow, wall_ms: int) -> PatientOutput:
        """Time passed without data: stale-data alarms, snooze expiry, re-alerts, escalation."""
        now = self.patient_time(window, wall_ms)
        profile = self.profile(window.patient_id)
        evaluated: dict[str, Finding | None] = stale_conditions(
            window, now, self.vitals_stale_ms, profile.utc_offset
        )
        fault = window.alarms.get(FAULT_KIND)
        if fault is not None and fault.state == "acknowledged":
            evaluated[FAULT_KIND] = None  # a care team has seen it: it resolves
        quiet = profile.is_quiet(now)
        return self._control_output(window, lifecycle(window).evaluate(evaluated, now, quiet=quiet))

    def quarantined(
        self,
        window: PatientWindow,
        replaced: PatientWindow | None,
        wall_ms: int,
        reason: str,
        evidence: dict[str, Any],
    ) -> PatientOutput:
        """The patient's state was quarantined and ``window`` replaces it: every alarm of
        ``replaced`` (when it could be read) is closed, and a ``monitoring_fault`` opens."""
        now = self.patient_time(window, wall_ms)
        events: list[dict[str, Any]] = []
        if replaced is not None:
            # an alarm the new window opened again (same kind and time: same id) stays open
            held = {a.alert_id for a in window.alarms.values()}
            gone = {k: a for k, a in replaced.alarms.items() if a.alert_id not in held}
            events += Lifecycle(window.patient_id, gone, {}).close_all(now, QUARANTINE_CLOSED)
        finding = Finding(FAULT_KIND, reason, evidence, None, "containment-2")
        events += lifecycle(window).evaluate({FAULT_KIND: finding}, now)
        return self._control_output(window, events)

    @staticmethod
    def seen_action(window: PatientWindow, alert_id: str, nonce: str) -> bool:
        """Whether the alarm ``alert_id`` of ``window`` applied an action with ``nonce``."""
        alarm = lifecycle(window).find(alert_id)
        return alarm is not None and nonce in alarm.nonces

    def act(
        self,
        window: PatientWindow,
        alert_id: str,
        action: str,
        by: str,
        wall_ms: int,
        minutes: int = 30,
        nonce: str | None = None,
    ) -> PatientOutput | None:
        """A care team's ``ack`` or ``snooze``; None when the alarm is not open here."""
        now = self.patient_time(window, wall_ms)
        alarms = lifecycle(window)
        if alarms.find(alert_id) is None:
            return None
        if action == "snooze":
            events = alarms.snooze(alert_id, by, minutes, now, nonce)
        else:
            events = alarms.acknowledge(alert_id, by, now, nonce)
        return self._control_output(window, events)
