"""``bedside worker`` with a fault injected for one patient: ``python poison_worker.py worker``.

Applying any observation of a patient whose id starts with ``inject-`` raises, as a bug in
the pipeline would: the stream must contain it to that patient's records.
"""

from __future__ import annotations

import sys
from typing import Any

from streams.cli import main
from streams.pipeline import PatientPipeline

_process = PatientPipeline.process


def _faulty(self: PatientPipeline, patient_id: str, *args: Any, **kwargs: Any) -> Any:
    if patient_id.startswith("inject-"):
        raise ZeroDivisionError("injected fault")
    return _process(self, patient_id, *args, **kwargs)


PatientPipeline.process = _faulty  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
