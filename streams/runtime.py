"""What the agents of one worker share: settings, counters and the pipeline's seams."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .access.pseudonyms import Pseudonyms
from .access.signing import Keys
from .alerts.quality import QualityStats
from .monitoring import Monitor
from .patients import PatientDirectory
from .processing.stats import IngestStats
from .settings import BrokerProfile, Settings

if TYPE_CHECKING:
    from .engine.alert_view import AlertView
    from .http.access import Access
    from .scoring.service import ModelScoring


class ChangelogTopic(Protocol):
    def get_topic_name(self) -> str: ...


class WindowTable(Protocol):
    """What the health and patient endpoints read of the patient-window table."""

    @property
    def changelog_topic(self) -> ChangelogTopic: ...

    def get(self, key: bytes) -> bytes | None: ...


@dataclass
class Runtime:
    """What the worker's parts (``streams.engine.app.worker_parts``) share; each part fills
    its own field when it registers, in start order."""

    settings: Settings
    profile: BrokerProfile = BrokerProfile.KAFKA  # the resolved broker profile
    ingest: IngestStats = field(default_factory=IngestStats)
    windows: WindowTable | None = None  # the patient-window table (engine.stream)
    scoring: ModelScoring | None = None  # the worker's model scoring (engine.stream)
    alert_view: AlertView | None = None  # every alarm, from the alerts topic (http.alarms)
    access: Access | None = None  # who may see and do what (http.access.access_of)
    quality: QualityStats = field(default_factory=QualityStats)  # live predicted_low quality
    monitor: Monitor = field(default_factory=Monitor)  # is monitoring working (health agent)
    keys: Keys = field(init=False)  # signs care-team actions and seals the audit chain
    patients: PatientDirectory = field(init=False)  # ids as keyed; each patient's settings

    def __post_init__(self) -> None:
        secret = self.settings.security.signing_key
        self.keys = Keys.derive(secret.get_secret_value() if secret else None)
        privacy = self.settings.privacy
        pseudonyms = (
            Pseudonyms(privacy.key.get_secret_value())
            if privacy.pseudonymise and privacy.key is not None
            else None
        )
        self.patients = PatientDirectory.from_settings(self.settings.stream, pseudonyms)


#: Young-generation threshold of the cyclic garbage collector in a worker. The stream
#: allocates a few hundred objects per event and frees nearly all of them by reference
#: counting; at Python's default (700) the collector ran every few events and, with many
#: patients' windows alive, took 15-25 % of a sparse-regime batch in process (124 -> 106
#: us/event with this threshold, 90 with the collector off; a worker on the embedded stack
#: gained a further 7 % with it off).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect young objects less often and leave what start-up built out of every collection."""
    gc.collect()
    gc.freeze()  # modules, settings, models: never garbage, never scanned again
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
