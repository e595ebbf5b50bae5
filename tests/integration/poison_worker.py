"""``bedside worker`` with a fault injected for one patient: ``python poison_worker.py worker``.

Applying any observation of a patient whose id starts with ``inject-``, or (when the
environment names ``POISON_VALUE``) any batch holding a reading of exactly that value, which
works under pseudonymised ids too, raises, as a bug in the pipeline would: the stream must
contain it to that patient's records.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from streams.cli import main
from streams.processing.pipeline import PatientPipeline

_process = PatientPipeline.process
POISON_VALUE = float(os.environ.get("POISON_VALUE", "nan"))  # nan equals nothing


def _faulty(self: PatientPipeline, patient_id: str, *args: Any, **kwargs: Any) -> Any:
    observations = args[1] if len(args) > 1 else kwargs.get("observations", [])
    if patient_id.startswith("inject-") or any(o.value == POISON_VALUE for o in observations):
        raise ZeroDivisionError("injected fault")
    return _process(self, patient_id, *args, **kwargs)


PatientPipeline.process = _faulty  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
