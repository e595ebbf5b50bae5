"""What happens to patients' events: state, scores, alarms, outputs.

One call per kind of event, each returning finished outputs, every alarm event sealed on
the patient's audit chain:

- :meth:`PatientPipeline.observations`: a batch's observations of many patients. Each
  patient's are applied to its state (contained: :mod:`streams.processing.containment`),
  the rules run at every event time, the models score every patient that changed at once
  (:class:`~streams.processing.ports.BatchScorer`, batched across patients), and each
  patient's model alarms, risk event and lines are added before its events are sealed;
- :meth:`PatientPipeline.tick`: time passed without data (stale data, snooze expiry,
  re-alerts, escalation), contained the same way;
- :meth:`PatientPipeline.act`: a care team's acknowledgement or snooze;
- :meth:`PatientPipeline.quarantined`: the patient's stored state was unusable.

Pure with respect to I/O (the batch step loads and stores states and sends the outputs),
so it is tested without a broker and reused by the benchmarks. Only the core writes a
patient's state (:class:`~streams.processing.state.PatientState`): scoring returns the
forecast's new adaptation and sealing the audit chain's new head, and they are kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..access.audit import seal
from ..access.signing import Keys
from ..alerts import quality
from ..alerts.lifecycle import FAULT_KIND, Finding, Lifecycle
from ..alerts.policy import render, stale_at, stale_conditions, transitions
from ..patients import PatientDirectory
from ..rules.glucose import GlucoseTargets
from ..schemas.events import RISK_SCHEMA_VERSION
from ..schemas.observation import Observation
from ..scoring import explain
from ..scoring.base import PatientProfile, Score, Scorer
from ..scoring.families import ModelRequest, ServingModel
from ..scoring.rule_scorers import default_scorers
from ..settings import StreamSettings
from ..sinks.lines import escape_tag, observation_line
from ..timefmt import iso
from ..windows.patient import CGM_CODE, Applied
from .containment import Contained, apply_contained, readable
from .outputs import Observed, PatientOutput, PatientResult
from .ports import BatchScorer
from .state import PatientState

DEFAULT_PROFILE = PatientProfile()
QUARANTINE_CLOSED = (
    "Closed: this patient's stored state was quarantined, so this alarm is no longer "
    "tracked. A monitoring fault alarm is open; review the patient by hand."
)
FAULT_REASON = (
    "Monitoring fault: this patient's stored state could not be processed and was reset; "
    "alarms restart from new readings. Review recent values by hand."
)
Rows = list[np.ndarray] | None  # a model's outputs for one request; None: not scored


@dataclass(slots=True)
class PatientBatch:
    """One patient's observations of a batch, and how to reach its stored state."""

    patient_id: str
    observations: list[Observation]
    load: Callable[[], PatientState | None]  # the current state (may raise)
    stored: Callable[[], bytes | None]  # the bytes it was loaded from (what a failure restores)


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
    """Applies patients' events to their states and derives scores, alarms and outputs."""

    def __init__(
        self,
        settings: StreamSettings,
        scorers: list[Scorer] | None = None,
        models: Sequence[ServingModel] = (),
        keys: Keys | None = None,
        patients: PatientDirectory | None = None,
        quarantine_to: str | None = None,
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
        # every per-patient setting, keyed as states are (pseudonyms when ids are)
        self.patients = patients or PatientDirectory.from_settings(settings)
        self.quarantine_to = quarantine_to  # where a quarantined state's bytes go (evidence)
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

    # -- observations ----------------------------------------------------------------------
    async def observations(
        self,
        patients: Sequence[PatientBatch],
        scorer: BatchScorer | None = None,
        arrived_at: int | None = None,
    ) -> list[PatientResult]:
        """Apply each patient's observations (``arrived_at``: the batch's wall-clock ms, from
        which ticks advance patient time; None in a replay that has no wall clock),
        score every patient that changed in one round, and finish each patient's outputs:
        a quarantine's fault output first, then one output per application, all sealed.
        ``scorer``: the models' (None: a pipeline without models)."""
        contained = [self._contain(patient, arrived_at) for patient in patients]
        requests = [r for c in contained for o in c.observed for r in o.requests]
        scored: dict[ModelRequest, Rows] = {}
        if requests:
            if scorer is None:
                msg = "this pipeline has models: observations() needs their scorer"
                raise ValueError(msg)
            scored = dict(zip(requests, await scorer.score(requests), strict=True))
        results = []
        contained.reverse()
        while contained:  # each patient's intermediate goes once finished, not at the end
            results.append(self._finish(contained.pop(), scored, arrived_at))
        return results

    def _contain(self, patient: PatientBatch, arrived_at: int | None) -> Contained:
        return apply_contained(
            self._observe,
            patient.patient_id,
            patient.observations,
            load=patient.load,
            stored=patient.stored,
            arrived_at=arrived_at,
        )

    def _finish(
        self, contained: Contained, scored: Mapping[ModelRequest, Rows], arrived_at: int | None
    ) -> PatientResult:
        state = contained.state
        outputs = []
        if contained.quarantined is not None:
            wall = arrived_at if arrived_at is not None else state.arrived_at
            error = contained.error or ""
            outputs.append(self.quarantined(state, contained.replaced, wall, error))
        outputs += [self._conclude(state, o, scored) for o in contained.observed]
        return PatientResult(
            state, outputs, contained.failed, contained.quarantined, contained.error
        )

    def _observe(
        self,
        patient_id: str,
        state: PatientState | None,
        observations: list[Observation],
        arrived_at: int | None = None,
    ) -> Observed:
        """Apply one patient's observations; evaluate the rules' alarms at every reading and
        list the model requests (one per model whose signals changed, at the latest reading).
        ``arrived_at``: wall-clock ms of the batch, from which ticks advance patient time."""
        state = state or PatientState.new(patient_id)
        if arrived_at is not None:
            state.arrived_at = max(state.arrived_at, arrived_at)
        observed = Observed(state, profile=self.profile(patient_id))
        fresh: dict[int, Score | None] = {}  # scores of the window as it is now
        ordered = sorted(observations, key=lambda o: o.effective_at)
        inserted = self._apply(observed, ordered, fresh)
        if not inserted:
            return observed
        window, profile = state.window, observed.profile
        for i, scorer in enumerate(self.scorers):
            if i not in fresh:
                fresh[i] = scorer.score(window, profile)
        observed.rule_scores = [s for i in range(len(self.scorers)) if (s := fresh[i])]
        families = {m.family.name for m in self.models if any(map(m.family.reacts_to, inserted))}
        for model in self.models:
            if model.family.name in families and model.family.ready(window):
                observed.requests.append(ModelRequest(model, window, profile))
        return observed

    def _apply(
        self, observed: Observed, ordered: list[Observation], fresh: dict[int, Score | None]
    ) -> list[Observation]:
        """Insert the observations in time order, evaluating the rules' alarms at every
        event time (a vitals set or BP panel counts once), so batch boundaries cannot hide
        a brief low. Returns the observations inserted; ``fresh`` keeps the scores of the
        window as it is at the end (by scorer index)."""
        state, applied, lines = observed.state, observed.applied, observed.lines
        window, profile = state.window, observed.profile
        reacting: set[int] = set()  # scorers touched by the current event time
        inserted: list[Observation] = []
        lateness, max_samples = self.lateness_ms, self.settings.max_vital_samples
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
                    observed.cgm_inserted += 1
                    window.note_offset(t_ms, observation.utc_offset_min)
                    self._judge(observed, float(observation.value), t_ms)
                fresh.clear()
                reacting.update(i for i, s in enumerate(self.scorers) if s.reacts_to(observation))
            following = ordered[index + 1] if index + 1 < len(ordered) else None
            if reacting and (
                following is None or following.effective_at != observation.effective_at
            ):
                for i in sorted(reacting):
                    fresh[i] = self.scorers[i].score(window, profile)
                scored = [s for i in sorted(reacting) if (s := fresh[i])]
                at = t_ms // 1000 * 1000  # the window's resolution: whole seconds
                for event in transitions(
                    window,
                    state.alarms,
                    scored,
                    profile,
                    self.model_kinds,
                    self.vitals_stale_ms,
                    now=at,
                ):
                    self._record(observed, state, event, at)
                reacting.clear()
        return inserted

    def _conclude(
        self, state: PatientState, observed: Observed, scored: Mapping[ModelRequest, Rows]
    ) -> PatientOutput:
        """``observed`` finished on ``state`` (the patient's state after the batch): model
        scores and alarms, the risk event and the score lines; its alarm events sealed. When
        the models' part fails, the rule alarms still go out, sealed (``model_error``)."""
        error = None
        if observed.inserted:
            try:
                model_scores = self._model_scores(state, observed, scored)
                scores = observed.rule_scores + model_scores
                t_ms = state.window.watermark
                risk = self._risk(state, scores)
                lines = risk_lines(state.patient_id, t_ms, scores)
            except Exception as exc:  # noqa: BLE001 - the rule alarms still go out
                error, risk, lines = type(exc).__name__, None, []
            observed.lines += lines
        else:
            risk = None
        alerts, state.audit = seal(self.keys.audit, state.audit, observed.events)
        return PatientOutput(
            state.patient_id,
            alerts,
            risk,
            observed.lines,
            observed.applied,
            observed.quality,
            observed.cgm_inserted,
            error,
        )

    def _model_scores(
        self, state: PatientState, observed: Observed, scored: Mapping[ModelRequest, Rows]
    ) -> list[Score]:
        """The models' scores of ``observed`` and the alarms they drive (recorded on it)."""
        window, profile = state.window, observed.profile
        model_scores = []
        for request in observed.requests:
            result = scored.get(request)
            if result is None:
                continue
            model = request.model
            score = model.family.to_score(
                result, model.manifest, window, model.score_name, request.x, state.personal
            )
            if score.adaptation is not None:
                state.personal = score.adaptation
            if model.drives_alarm and model.family.alarm_holds(score, profile):
                # why: only for scores that alert, so the stream pays for it rarely
                x = request.x if request.x is not None else model.family.input(window, profile)
                if x is not None:
                    score.details["drivers"] = explain.drivers(model.family.name, x, model.run)
            model_scores.append(score)
        primary = [s for s in model_scores if not s.name.endswith("_shadow")]
        if primary:
            for event in transitions(
                window, state.alarms, primary, profile, self.model_kinds, self.vitals_stale_ms
            ):
                self._record(observed, state, event, window.watermark)
        return model_scores

    @staticmethod
    def _risk(state: PatientState, scores: list[Score]) -> bytes:
        window = state.window
        return orjson.dumps(
            {
                "patient_id": window.patient_id,
                "event_time": iso(window.watermark),
                "scores": [s.as_dict() for s in scores],
                "inputs": window.summary(),
                "schema_version": RISK_SCHEMA_VERSION,
            }
        )

    @staticmethod
    def _record(observed: Observed, state: PatientState, event: dict[str, Any], t_ms: int) -> None:
        observed.events.append(event)
        observed.lines.append(alert_line(event, t_ms))
        if event["kind"] == "predicted_low" and event["transition"] == "opened":
            state.predictions = quality.predicted(state.predictions, t_ms)

    @staticmethod
    def _judge(observed: Observed, value: float, t_ms: int) -> None:
        state = observed.state
        judgements, state.predictions = quality.judge(state.predictions, t_ms // 1000 * 1000, value)
        for judgement in judgements:
            observed.quality.append(judgement)
            observed.lines.append(
                quality.quality_line(state.patient_id, "predicted_low", judgement)
            )

    # -- time, faults and care-team actions (no observations) -----------------------------
    @staticmethod
    def patient_time(state: PatientState, wall_ms: int) -> int:
        """The patient's clock: its newest event time plus wall time since that data came,
        so live and replayed streams alike age their alarms by real elapsed time."""
        return state.window.watermark + max(0, wall_ms - state.arrived_at)

    def _control_output(self, state: PatientState, events: list[dict[str, Any]]) -> PatientOutput:
        alerts, state.audit = seal(self.keys.audit, state.audit, [render(e) for e in events])
        lines = [alert_line(e, e["event_time"]) for e in events]
        return PatientOutput(state.patient_id, alerts, lines=lines)

    def tick_due(self, state: PatientState) -> int | None:
        """The wall-clock ms from which a tick may change ``state``: 0 (every tick) while an
        alarm is open or a condition is pending; else when its data would go stale; None
        when only new data can change it (it has sent nothing a tick watches)."""
        alarms = state.alarms
        if alarms.alarms or any(any(bits) for bits in alarms.history.values()):
            return 0
        window = state.window
        stale = stale_at(window, self.vitals_stale_ms)
        if stale is None:
            return None
        # patient time = watermark + (wall - arrived_at): see patient_time
        return state.arrived_at + max(0, stale - window.watermark)

    def tick(
        self,
        patient_id: str,
        load: Callable[[], PatientState | None],
        stored: Callable[[], bytes | None],
        wall_ms: int,
    ) -> PatientResult | None:
        """Time passed without data: stale-data alarms, snooze expiry, re-alerts, escalation.
        None for a patient without a state; a state that makes the tick fail is quarantined
        (its alarms closed when it can be read, a ``monitoring_fault`` opened)."""
        try:
            state = load()
            if state is None:
                return None
            return PatientResult(state, [self._tick(state, wall_ms)])
        except Exception as exc:  # noqa: BLE001 - one patient's state, contained
            error = type(exc).__name__
        bad = stored() or b""
        replaced = readable(bad)
        state = PatientState.new(patient_id, replaced.audit if replaced is not None else None)
        fault = self.quarantined(state, replaced, wall_ms, error)
        return PatientResult(state, [fault], quarantined=bad, error=error)

    def _tick(self, state: PatientState, wall_ms: int) -> PatientOutput:
        now = self.patient_time(state, wall_ms)
        profile = self.profile(state.patient_id)
        evaluated: dict[str, Finding | None] = stale_conditions(
            state.window, now, self.vitals_stale_ms, profile.utc_offset
        )
        fault = state.alarms.alarms.get(FAULT_KIND)
        if fault is not None and fault.state == "acknowledged":
            evaluated[FAULT_KIND] = None  # a care team has seen it: it resolves
        quiet = profile.is_quiet(now)
        return self._control_output(state, state.alarms.evaluate(evaluated, now, quiet=quiet))

    def quarantined(
        self, state: PatientState, replaced: PatientState | None, wall_ms: int, error: str
    ) -> PatientOutput:
        """The patient's state was quarantined and ``state`` replaces it: every alarm of
        ``replaced`` (when it could be read) is closed, and a ``monitoring_fault`` opens."""
        now = self.patient_time(state, wall_ms)
        events: list[dict[str, Any]] = []
        if replaced is not None:
            # an alarm the new state opened again (same kind and time: same id) stays open
            held = {a.alert_id for a in state.alarms.alarms.values()}
            gone = {k: a for k, a in replaced.alarms.alarms.items() if a.alert_id not in held}
            events += Lifecycle(state.patient_id, gone, {}).close_all(now, QUARANTINE_CLOSED)
        evidence = {
            "error": error,
            **({"quarantined_to": self.quarantine_to} if self.quarantine_to else {}),
            # the views close the patient's earlier alarms when they could not be read here
            "earlier_alarms": "closed" if replaced is not None else "unreadable",
        }
        finding = Finding(FAULT_KIND, FAULT_REASON, evidence, None, "containment-2")
        events += state.alarms.evaluate({FAULT_KIND: finding}, now)
        return self._control_output(state, events)

    @staticmethod
    def seen_action(state: PatientState, alert_id: str, nonce: str) -> bool:
        """Whether the alarm ``alert_id`` of ``state`` applied an action with ``nonce``."""
        alarm = state.alarms.find(alert_id)
        return alarm is not None and nonce in alarm.nonces

    def act(
        self,
        state: PatientState,
        alert_id: str,
        action: str,
        by: str,
        wall_ms: int,
        minutes: int = 30,
        nonce: str | None = None,
    ) -> PatientOutput | None:
        """A care team's ``ack`` or ``snooze``; None when the alarm is not open here."""
        now = self.patient_time(state, wall_ms)
        alarms = state.alarms
        if alarms.find(alert_id) is None:
            return None
        if action == "snooze":
            events = alarms.snooze(alert_id, by, minutes, now, nonce)
        else:
            events = alarms.acknowledge(alert_id, by, now, nonce)
        return self._control_output(state, events)
