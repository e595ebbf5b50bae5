"""``bedside worker`` with faults injected for some patients: ``python poison_worker.py worker``.

Applying any observation of a patient whose id starts with ``inject-``, or (when the
environment names ``POISON_VALUE``) any batch holding a reading of exactly that value, which
works under pseudonymised ids too, raises, as a bug in the pipeline would: the stream must
contain it to that patient's records. For a patient whose id starts with ``modelfault-``,
turning the models' outputs into scores raises, as a bug in a model family would: the rule
alarms must still go out, sealed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from streams.cli import main
from streams.processing.pipeline import PatientPipeline

_observe = PatientPipeline._observe
_model_scores = PatientPipeline._model_scores
POISON_VALUE = float(os.environ.get("POISON_VALUE", "nan"))  # nan equals nothing


def _faulty(self: PatientPipeline, patient_id: str, *args: Any, **kwargs: Any) -> Any:
    observations = args[1] if len(args) > 1 else kwargs.get("observations", [])
    if patient_id.startswith("inject-") or any(o.value == POISON_VALUE for o in observations):
        raise ZeroDivisionError("injected fault")
    return _observe(self, patient_id, *args, **kwargs)


def _faulty_models(self: PatientPipeline, state: Any, *args: Any) -> Any:
    if state.patient_id.startswith("modelfault-"):
        raise OverflowError("injected model fault")
    return _model_scores(self, state, *args)


PatientPipeline._observe = _faulty  # type: ignore[method-assign]
PatientPipeline._model_scores = _faulty_models  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
