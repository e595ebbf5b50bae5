"""Pseudonymised patient ids (``BEDSIDE_PRIVACY__PSEUDONYMISE``).

Ingest replaces each sender's patient id with ``px-`` and 24 base32 characters of
HMAC-SHA256(``BEDSIDE_PRIVACY__KEY``, id) before anything is keyed, stored or published:
windows, changelogs, risk and alert events, actions, series tags and dead-letter keys carry
only the pseudonym. The same id always gives the same pseudonym under one key; without the
key it cannot be computed or reversed. An id that already is a pseudonym (a record the
worker re-keyed to its partition) is kept. Event ids are keyed too: a sender's
``event_id`` (or the one Bedside derived from the clear id) becomes an HMAC of it, so an
MRN-shaped id cannot be recovered by hashing candidates. The worker remembers pseudonym -> id
for the patients it has seen (in memory, bounded; the least recently seen go first, and
patients named in the settings files are never forgotten, so a flood of unknown ids cannot
evict the names of the ward's patients), so the pages show the id to users of the
patient's ward; nothing else stores it. The ingest topics keep what senders sent (ids in
clear), as does a dead letter's ``original_b64``: treat those topics as holding PHI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable

from ..schemas.observation import Observation

PREFIX = "px-"
SHAPE = re.compile(r"^px-[a-z2-7]{24}$")
MEMORY = 200_000  # pseudonym -> id pairs kept for the pages


class Pseudonyms:
    def __init__(self, key: str, memory: int = MEMORY) -> None:
        self.key = hashlib.sha256(b"bedside pseudonyms\n" + key.encode()).digest()
        self.memory = memory
        self.names: OrderedDict[str, str] = OrderedDict()  # least recently seen first
        self.pinned: dict[str, str] = {}  # patients of the settings files: never forgotten

    @staticmethod
    def is_pseudonym(patient_id: str) -> bool:
        return SHAPE.match(patient_id) is not None

    def of(self, patient_id: str, *, shown: str | None = None, pinned: bool = False) -> str:
        """The pseudonym of ``patient_id`` (itself when it already is one); ``shown``: the
        spelling the sender used, for the pages (``patient_id`` itself by default)."""
        if self.is_pseudonym(patient_id):
            return patient_id
        pseudonym = PREFIX + self._mac(patient_id)[:24]
        name = shown if shown is not None else patient_id
        if pinned:
            self.pinned[pseudonym] = name
        elif pseudonym not in self.pinned:
            self.names[pseudonym] = name
            self.names.move_to_end(pseudonym)
            if len(self.names) > self.memory:
                self.names.popitem(last=False)
        return pseudonym

    def _mac(self, text: str) -> str:
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode().lower()

    def observations(
        self, observations: list[Observation], key: Callable[[str], str] | None = None
    ) -> list[Observation]:
        """The observations with their patient ids pseudonymised (through ``key`` when
        given) and their event ids keyed."""
        key = key or self.of
        return [
            o.model_copy(
                update={"patient_id": key(o.patient_id), "event_id": self._event_id(o.event_id)}
            )
            for o in observations
        ]

    def _event_id(self, event_id: str) -> str:
        if event_id.startswith("pe-"):
            return event_id  # keyed already (a record re-keyed to its partition)
        return "pe-" + self._mac("event\n" + event_id)[:32]

    def display(self, pseudonym: str) -> str | None:
        """The id a sender used for ``pseudonym``, when this worker has seen it."""
        return self.pinned.get(pseudonym) or self.names.get(pseudonym)
