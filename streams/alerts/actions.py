"""Care-team actions on alarms, as records on ``bedside.alert-acks`` (keyed by patient id).

``{"alert_id": "...", "patient_id": "...", "action": "ack" | "snooze", "by": "nurse-7",
"minutes": 30, "issued_at_ms": ..., "nonce": "...", "sig": "..."}``. ``issued_at_ms`` and
``nonce`` are inside the signature: a signed action older than
``BEDSIDE_SECURITY__ACTION_MAX_AGE_S``, or one whose nonce the alarm has seen, is
dead-lettered ``replayed`` (a captured snooze cannot silence an escalation again).
``POST /v1/alerts/{alert_id}/ack`` (and ``/snooze``) publish
the same record, ``by`` being the signed-in user, signed by the gateway (``sig``); the worker
applies only signed actions unless ``BEDSIDE_SECURITY__UNSIGNED_ACTIONS`` is set. An invalid
record goes to the dead-letter topic with reason ``schema``; an unsigned one with
``unauthenticated``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..ingest.normalise import describe_errors
from ..ingest.problems import DecodeResult, Reason


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=200)
    action: Literal["ack", "snooze"] = "ack"
    by: str = Field(min_length=1, max_length=200, description="Who acted (user or role).")
    minutes: int = Field(30, ge=1, le=1440, description="Snooze length.")
    issued_at_ms: int | None = Field(
        None, ge=0, le=2**53, description="When the gateway signed it (ms since the epoch)."
    )
    nonce: str | None = Field(
        None, min_length=8, max_length=64, pattern=r"^[0-9a-f]+$", description="Never reused."
    )
    sig: str | None = Field(
        None, max_length=64, description="The gateway's HMAC (streams/access/signing.py)."
    )


def decode_action(raw: bytes) -> AlertAction | DecodeResult:
    """The action, or a DecodeResult whose problems say why it is not one."""
    try:
        return AlertAction.model_validate_json(raw)
    except ValidationError as error:
        return DecodeResult.refused(Reason.SCHEMA, f"not an alert action: {describe_errors(error)}")
