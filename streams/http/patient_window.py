"""Read access to a patient's stored state: ``GET /v1/patients/{patient_id}/window``.

Answers from the worker that holds the patient's partition (one worker in development; in
production put the route behind the worker that owns the key). For signed-in users of the
patient's ward (``streams.http.signin``). Used by tests, the care-team page and operators.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from ..processing import codec
from ..processing.state import PatientState
from ..scoring.personal import personal_summary
from .ports import StoredWindows
from .signin import Access, guarded


def window_document(state: PatientState) -> dict[str, Any]:
    """The patient's state as JSON: the window's summary and series, open alerts, the audit
    chain's head and the forecast's adaptation."""
    window = state.window
    return {
        "patient_id": window.patient_id,
        "summary": window.summary(),
        "cgm": [[t, v] for t, v in window.cgm_series()],
        "vitals": {code: [[t, v] for t, v in s] for code, s in window.vitals.items()},
        "labs": {code: [t, v] for code, (t, v) in window.labs.items()},
        "baselines": {code: b.stats() for code, b in window.baselines.items()},
        "open_alerts": {
            kind: {"alert_id": a.alert_id, "state": a.state, "severity": a.severity}
            for kind, a in state.alarms.alarms.items()
        },
        # the audit chain's length and last link: what `bedside audit verify` must find
        "audit": {"seq": state.audit.seq, "head": state.audit.head.hex()},
        # the glucose forecast's per-patient adaptation (null while it does not serve)
        "personal": personal_summary(state.personal),
    }


def register(app: faust.App, access: Access, windows: StoredWindows) -> None:
    """Add ``GET /v1/patients/{patient_id}/window``: the stored window, as a document."""

    @app.page("/v1/patients/{patient_id}/window")
    class PatientWindowView(View):
        @guarded
        async def get(self, request: Request, patient_id: str) -> Response:
            access.patient(request, patient_id)
            stored = windows.get(patient_id.encode())
            if stored is None:
                detail = "no stored window for this patient on this worker"
                body = {"error": "not_found", "detail": detail, "patient_id": patient_id}
                return self.json(body, status=404)
            return self.json(window_document(codec.decode(stored)))
