"""Pseudonymised patient ids (``BEDSIDE_PRIVACY__PSEUDONYMISE``).

Ingest replaces each sender's patient id with ``px-`` and 24 base32 characters of
HMAC-SHA256(``BEDSIDE_PRIVACY__KEY``, id) before anything is keyed, stored or published:
windows, changelogs, risk and alert events, actions, series tags and dead-letter keys carry
only the pseudonym. The same id always gives the same pseudonym under one key; without the
key it cannot be computed or reversed. An id that already is a pseudonym (a record the
worker re-keyed to its partition) is kept. The worker remembers pseudonym -> id for the
patients it has seen (in memory, bounded), so the pages show the id to users of the
patient's ward; nothing else stores it. The ingest topics keep what senders sent (ids in
clear), as does a dead letter's ``original_b64``: treat those topics as holding PHI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import TypeVar

from ..schemas.observation import Observation

PREFIX = "px-"
SHAPE = re.compile(r"^px-[a-z2-7]{24}$")
MEMORY = 200_000  # pseudonym -> id pairs kept for the pages

T = TypeVar("T")


class Pseudonyms:
    def __init__(self, key: str, memory: int = MEMORY) -> None:
        self.key = hashlib.sha256(b"bedside pseudonyms\n" + key.encode()).digest()
        self.memory = memory
        self.names: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def is_pseudonym(patient_id: str) -> bool:
        return SHAPE.match(patient_id) is not None

    def of(self, patient_id: str) -> str:
        """The pseudonym of ``patient_id`` (itself when it already is one)."""
        if self.is_pseudonym(patient_id):
            return patient_id
        digest = hmac.new(self.key, patient_id.encode(), hashlib.sha256).digest()
        pseudonym = PREFIX + base64.b32encode(digest).decode()[:24].lower()
        if pseudonym not in self.names:
            self.names[pseudonym] = patient_id
            if len(self.names) > self.memory:
                self.names.popitem(last=False)
        return pseudonym

    def observations(self, observations: list[Observation]) -> list[Observation]:
        """The observations with their patient ids pseudonymised."""
        return [o.model_copy(update={"patient_id": self.of(o.patient_id)}) for o in observations]

    def display(self, pseudonym: str) -> str | None:
        """The id a sender used for ``pseudonym``, when this worker has seen it."""
        return self.names.get(pseudonym)

    def keyed(self, by_patient: Mapping[str, T]) -> dict[str, T]:
        """A mapping of clear ids (settings files) re-keyed by pseudonym."""
        return {self.of(patient): value for patient, value in by_patient.items()}
