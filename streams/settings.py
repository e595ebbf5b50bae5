"""Typed configuration for every Bedside process.

One frozen :class:`Settings` object, read from ``BEDSIDE_*`` environment variables
(nested sections joined with ``__``, e.g. ``BEDSIDE_KAFKA__BOOTSTRAP``) and an optional
``.env`` file. Built by :func:`get_settings`, never at import time, and passed in.
"""

from __future__ import annotations

import ipaddress
import json
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BEDSIDE_"
ENV_NESTED_DELIMITER = "__"


#: Secrets people paste from examples; refused wherever a secret is set.
PLACEHOLDER_SECRETS = frozenset(
    {"change-me", "changeme", "change-me-please", "replace-me", "replace-me-please", "secret",
     "password", "token", "example", "test", "...", "xxx", "todo", "please-change-me",
     "your-token-here", "your-secret-here", "insecure", "default"}
)  # fmt: skip
MIN_WEB_TOKEN_CHARS = 32
MIN_NIGHTSCOUT_SECRET_CHARS = 12  # Nightscout's own minimum for API_SECRET


def secret_problem(value: str, min_chars: int) -> str | None:
    """Why a configured secret is unusable (empty, short, a known placeholder), or None."""
    plain = value.strip().lower()
    if not plain:
        return "is empty"
    if (
        plain in PLACEHOLDER_SECRETS
        or plain.strip(".-_x*") == ""
        or "change" in plain
        and "me" in plain
    ):
        return "is a placeholder from an example"
    if len(value) < min_chars:
        return f"is shorter than {min_chars} characters"
    return None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerProfile(StrEnum):
    """How Faust is tuned for the broker it talks to."""

    AUTO = "auto"  # embedded when the broker reports the embedded stack's cluster id
    EMBEDDED = "embedded"  # the local Tansu broker: see streams.engine.embedded
    KAFKA = "kafka"  # a real Apache Kafka cluster: Faust's defaults


class KafkaSettings(_Section):
    """Where the broker is and how to authenticate to it."""

    bootstrap: str = Field(
        "127.0.0.1:9092", description="comma-separated `host:port` bootstrap brokers"
    )
    profile: BrokerProfile = Field(
        BrokerProfile.AUTO,
        description=(
            "broker profile: `auto`, `embedded` or `kafka` "
            "([operations](operations.md#broker-profiles))"
        ),
    )
    embedded_cluster_id: str = Field(
        "bedside-embedded",
        description="cluster id of the embedded broker; `auto` looks for it",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`"
    )
    sasl_username: str | None = Field(None, description="SASL user (required with `SASL_*`)")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (secret; required with `SASL_*`)"
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates"
    )
    ssl_certfile: Path | None = Field(
        None, description="client certificate for mutual TLS (with the key file)"
    )
    ssl_keyfile: Path | None = Field(None, description="client private key for mutual TLS")
    ssl_key_password: SecretStr | None = Field(
        None, description="password of the client key (secret)"
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description=(
            "`at_least_once` (default: a replay after a crash re-sends records with the same "
            "ids) or `exactly_once` (experimental, Kafka profile only: Kafka transactions; "
            "slower, alarms reach `read_committed` consumers at the next commit, and a "
            "takeover can still repeat them) ([operations](operations.md#exactly-once-on-kafka))"
        ),
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description=(
            "how long the consumer group waits for a silent worker before its patients go "
            "to the others (the alarm gap when a worker dies); heartbeats every third of "
            "it; 6–300 (the embedded profile uses 6)"
        ),
    )

    @property
    def servers(self) -> list[str]:
        """Bootstrap servers as a list of ``host:port``."""
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap_not_empty(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            msg = "bootstrap must name at least one host:port"
            raise ValueError(msg)
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                msg = f"bootstrap server {server!r} is not host:port"
                raise ValueError(msg)
        return ",".join(servers)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and (
            not self.sasl_username
            or self.sasl_password is None
            or secret_problem(self.sasl_password.get_secret_value(), 1)
        ):
            msg = (
                f"security_protocol={self.security_protocol} needs sasl_username and a real "
                "sasl_password (not empty, not a placeholder)"
            )
            raise ValueError(msg)
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            msg = "ssl_certfile and ssl_keyfile must be set together"
            raise ValueError(msg)
        return self


class TopicSettings(_Section):
    """Topic names (prefix + fixed suffix) and how they are created."""

    prefix: str = Field("bedside.", description="prefix of every topic name")
    partitions: int = Field(8, ge=1, le=1024, description="partitions of every Bedside topic")
    replication_factor: int = Field(
        1,
        ge=1,
        le=7,
        description="replication factor when Bedside creates topics (3 in production)",
    )

    @property
    def vitals(self) -> str:
        return f"{self.prefix}vitals"

    @property
    def glucose(self) -> str:
        return f"{self.prefix}glucose"

    @property
    def labs(self) -> str:
        return f"{self.prefix}labs"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"

    @property
    def risk(self) -> str:
        return f"{self.prefix}risk"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def alert_acks(self) -> str:
        return f"{self.prefix}alert-acks"

    @property
    def ticks(self) -> str:
        """Clock ticks per partition: time-driven alarm transitions run in the stream."""
        return f"{self.prefix}ticks"

    @property
    def patient_stream(self) -> tuple[str, ...]:
        """What the patient agent consumes, co-partitioned: ingest, acknowledgements, ticks."""
        return (*self.ingest, self.alert_acks, self.ticks)

    @property
    def ingest(self) -> tuple[str, str, str]:
        """The three ingest topics, keyed by patient id."""
        return (self.vitals, self.glucose, self.labs)

    @property
    def all(self) -> tuple[str, ...]:
        """Every topic Bedside owns (Faust's own changelogs excluded)."""
        return (*self.ingest, self.deadletter, self.risk, self.alerts, self.alert_acks, self.ticks)


class InfluxSettings(_Section):
    """The InfluxDB v2 write API the sink talks to (InfluxDB 2.x/3.x; locally VictoriaMetrics)."""

    url: str = Field("http://127.0.0.1:8086", description="base URL of the InfluxDB v2 API")
    token: SecretStr = Field(
        SecretStr("bedside-local"),
        description="API token (secret); the local server accepts any value",
    )
    org: str = Field("bedside", description="InfluxDB organisation")
    bucket: str = Field("bedside", description="InfluxDB bucket (database on 3.x)")
    timeout_ms: int = Field(10_000, ge=100, description="HTTP timeout of writes")
    retention_days: int = Field(
        90,
        ge=0,
        description=(
            "the bucket's retention: older points are not written, only counted (`0`: no limit)"
        ),
    )
    read_api: Literal["auto", "flux", "prometheus"] = Field(
        "auto",
        description=(
            "how the care-team pages read series back: `flux` (InfluxDB 2.x), `prometheus` "
            "(VictoriaMetrics), `auto` (asks `/health`)"
        ),
    )
    ca_file: Path | None = Field(
        None,
        description=(
            "CA certificate(s) that sign an `https://` time-series server's certificate "
            "(default: the system's CAs)"
        ),
    )


class WebSettings(_Section):
    """The worker's HTTP server (gateway, metrics, care-team page)."""

    host: str = Field("127.0.0.1", description="interface of the worker's web server")
    port: int = Field(
        6066,
        ge=1,
        le=65535,
        description="port of the worker's web server (`/health`, `/ready`, gateway)",
    )
    token: SecretStr | None = Field(
        None,
        description=(
            "bearer token of the HTTP API (secret, ≥ 32 characters, no placeholder); "
            "required when the host is not loopback"
        ),
    )
    nightscout_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "JSON object patient id → Nightscout API secret (≥ 12 characters) for the "
            "Nightscout routes (`api-secret` header, `?secret=`)"
        ),
    )
    nightscout_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "JSON object patient id → Nightscout access token (≥ 12 characters): `?token=` "
            "or `Authorization: Bearer` on the Nightscout routes"
        ),
    )
    publish_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "longest the gateway waits for the broker before answering 503 with `Retry-After`"
        ),
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "JSON list of host names the web server answers to in `Host`/`Origin` (besides "
            "loopback and `BEDSIDE_WEB__HOST`)"
        ),
    )
    tls_certfile: Path | None = Field(
        None,
        description=(
            "certificate chain (PEM) of the worker's web server: it serves HTTPS (TLS ≥ 1.2)"
        ),
    )
    tls_keyfile: Path | None = Field(None, description="its private key (PEM); both or neither")
    auth: Literal["users", "none"] = Field(
        "users",
        description=(
            "`users`: patient data and alarm actions need a named user of the users file; "
            "`none`: anyone (development only, warned at start)"
        ),
    )
    users_file: Path | None = Field(
        None,
        description=(
            "JSON users file (name, role, wards, SHA-256 of the token); `bedside users add`"
            " writes it. Without it nobody reads patient data"
        ),
    )
    default_ward: str = Field(
        "general",
        min_length=1,
        description=(
            "ward of a patient whose settings (`BEDSIDE_STREAM__PATIENT_SETTINGS_FILE`) name none"
        ),
    )
    stream_max_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "longest a page's live event stream lasts; the page then reconnects (sign-in "
            "checked again) and reloads"
        ),
    )

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def hosts(self) -> frozenset[str]:
        """Host names a request may name (Host, Origin): loopback, web.host, allowed_hosts."""
        names = {"localhost", "127.0.0.1", "::1", self.host, *self.allowed_hosts}
        return frozenset(n.lower().strip("[]") for n in names if n not in ("0.0.0.0", "::"))

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> WebSettings:
        if self.token is not None:
            problem = secret_problem(self.token.get_secret_value(), MIN_WEB_TOKEN_CHARS)
            if problem:
                msg = f"BEDSIDE_WEB__TOKEN {problem}: use a random value (openssl rand -hex 32)"
                raise ValueError(msg)
        if not self.is_loopback and self.token is None:
            msg = f"web.host={self.host} is not loopback: set BEDSIDE_WEB__TOKEN"
            raise ValueError(msg)
        if not self.is_loopback and self.auth == "none":
            msg = (
                f"BEDSIDE_WEB__AUTH=none lets anyone read every patient: refused on "
                f"web.host={self.host}, which is not loopback (development on 127.0.0.1 only)"
            )
            raise ValueError(msg)
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            msg = "set both BEDSIDE_WEB__TLS_CERTFILE and BEDSIDE_WEB__TLS_KEYFILE, or neither"
            raise ValueError(msg)
        for what, given in (
            ("secret", self.nightscout_secrets),
            ("access token", self.nightscout_tokens),
        ):
            for patient, secret in given.items():
                problem = secret_problem(secret.get_secret_value(), MIN_NIGHTSCOUT_SECRET_CHARS)
                if problem:
                    msg = f"the Nightscout {what} of patient {patient!r} {problem}"
                    raise ValueError(msg)
        return self


class IngestSettings(_Section):
    """Limits and batching of the ingest path (Kafka and HTTP)."""

    max_record_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="records and HTTP bodies over this size are rejected (`too_large`, HTTP 413)",
    )
    max_entries: int = Field(
        1000,
        ge=1,
        description=(
            "Bundle entries or list items over this count are rejected (`too_many_entries`)"
        ),
    )
    batch_size: int = Field(
        10_000,
        ge=1,
        description=(
            "most records processed as one batch (whatever one fetch returns, up to this many)"
        ),
    )
    max_unstored_points: int = Field(
        2_000_000,
        ge=1,
        description=(
            "most time-series points computed but not yet accepted by the database (an "
            "outage); alarms flow until then, then the stream waits"
        ),
    )
    max_unstored_batches: int = Field(
        10_000, ge=1, description="most batches computed but not yet stored"
    )
    window_cache: int = Field(
        20_000,
        ge=0,
        description="patients' windows kept decoded between batches (most recently processed)",
    )


class GlucoseTargetSettings(_Section):
    urgent_low: float = 54.0
    low: float = 70.0
    high: float = 180.0
    urgent_high: float = 250.0

    @model_validator(mode="after")
    def _ordered(self) -> GlucoseTargetSettings:
        if not 0 < self.urgent_low < self.low < self.high < self.urgent_high:
            msg = "glucose targets must satisfy 0 < urgent_low < low < high < urgent_high"
            raise ValueError(msg)
        return self


class StreamSettings(_Section):
    """Per-patient windows, scoring and the defaults of per-patient clinical settings."""

    allowed_lateness_s: int = Field(
        7200,
        ge=0,
        description=(
            "events further behind the newest event time of the same patient and signal are"
            " late: written to InfluxDB and counted, not windowed"
        ),
    )
    max_vital_samples: int = Field(
        288, ge=8, description="bound of each vital-sign buffer (24 h at 5-minute readings)"
    )
    news2_max_age_s: int = Field(
        14400,
        ge=60,
        description="a vital older than this does not count towards NEWS2 (reported missing)",
    )
    vitals_stale_s: int = Field(
        21600,
        ge=60,
        description="no vital sign for this long (patients who send vitals) opens `vitals_stale`",
    )
    tick_interval_s: float = Field(
        30.0,
        gt=0,
        description=(
            "how often time-driven alarm transitions (re-alerts, escalation, snooze expiry,"
            " stale data) are evaluated"
        ),
    )
    degraded_after_s: float = Field(
        30.0,
        gt=0,
        description=(
            "data not processed or stored for this long: a `monitoring_degraded` alert "
            "event; `/ready` is false from the first second"
        ),
    )
    spo2_scale2_patients: list[str] = Field(
        default_factory=list,
        description="JSON list of patients scored on NEWS2 SpO2 scale 2",
    )
    glucose_targets: dict[str, GlucoseTargetSettings] = Field(
        default_factory=dict,
        description=(
            'JSON: patient id → `{"urgent_low","low","high","urgent_high"}` mg/dL (defaults'
            " 54/70/180/250)"
        ),
    )
    patient_settings_file: Path | None = Field(
        None,
        description=(
            "JSON file: patient id → `glucose_targets`, `spo2_scale`, `quiet_hours` "
            "(`start`, `end`, IANA `timezone`), `tz` (IANA: the patient's own time of day "
            "for the glucose model; UTC when absent); validated at start, a bad value stops"
            " the worker naming patient and field"
        ),
    )


ModelName = Literal["glucose", "deterioration"]
DEFAULT_MODELS: tuple[ModelName, ...] = ("glucose",)  # NEWS2 serves the deterioration alarms


class ScoringSettings(_Section):
    """ONNX risk models: where they come from, where they run, how requests are batched."""

    models: list[ModelName] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        description=(
            "JSON list of model families to score with; `[]`: rules only. `deterioration` "
            "is off by default: no deterioration model has beaten NEWS2 on real patients, "
            "so NEWS2 (`news2_medium`, `news2_high`) serves the deterioration alarms; "
            "adding it scores the simulated-ward model and lets it raise `deterioration`"
        ),
    )
    model_dir: Path | None = Field(
        None,
        description=(
            "model directory `<name>/<version>/{model.onnx,manifest.json}`; unset: the "
            "models shipped in the package"
        ),
    )
    versions: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "JSON: model name → pinned version (default: the newest in the directory, "
            "reloaded when a newer one appears)"
        ),
    )
    shadow: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "JSON: model name → candidate version scored beside the primary, published on "
            "`bedside.risk`, never alerting"
        ),
    )
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description=(
            "ONNX Runtime provider: `auto` (CUDA when onnxruntime-gpu and a GPU are "
            "present, else CPU), `cpu`, `cuda`"
        ),
    )
    intra_op_threads: int = Field(
        1,
        ge=0,
        description="ONNX Runtime threads per call (1 was fastest on 2 cores; 0: ORT's default)",
    )
    max_batch: int = Field(256, ge=1, le=65536, description="most windows scored in one model call")
    threaded: bool = Field(
        False,
        description=(
            "run model calls on a worker thread instead of the event loop (a call of 256 "
            "windows holds the loop 1–3 ms on a CPU; on the 2-core box the thread made the "
            "sparse stream 2.7× slower)"
        ),
    )
    reload_interval_s: float = Field(
        30.0, gt=0, description="how often the model directory is checked for new versions"
    )


class WorkerSettings(_Section):
    """The Faust worker process."""

    app_id: str = Field("bedside", description="Faust app id: consumer group and table prefix")
    store: Literal["memory", "rocksdb"] = Field(
        "memory", description="table store: `memory` (development) or `rocksdb` (production)"
    )
    data_dir: Path = Field(
        Path(".bedside/worker"), description="worker data directory (RocksDB files)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="`debug`, `info`, `warning` or `error`"
    )
    debug_libraries: bool = Field(
        False,
        description=(
            "let Faust, mode and aiokafka log below INFO (they print whole records: patient data)"
        ),
    )


class SecuritySettings(_Section):
    """Signatures of care-team actions and of the audit chain (streams/access/signing.py)."""

    signing_key: SecretStr | None = Field(
        None,
        description=(
            "secret that signs care-team actions and chains audit records, the same on "
            "every worker (≥ 32 characters); required when the web host is not loopback"
        ),
        json_schema_extra={"reference_default": "– (random per process)"},
    )
    unsigned_actions: bool = Field(
        False,
        description=(
            "apply actions on `alert-acks` without the gateway's signature: only where "
            "Kafka ACLs restrict who writes that topic"
        ),
    )
    action_max_age_s: int = Field(
        900,
        ge=10,
        description=(
            "a signed care-team action older than this when applied is dead-lettered "
            "`replayed` (as is one whose nonce its alarm has seen)"
        ),
    )

    @model_validator(mode="after")
    def _usable_key(self) -> SecuritySettings:
        if self.signing_key is not None:
            problem = secret_problem(self.signing_key.get_secret_value(), MIN_WEB_TOKEN_CHARS)
            if problem:
                msg = f"BEDSIDE_SECURITY__SIGNING_KEY {problem}: use openssl rand -hex 32"
                raise ValueError(msg)
        return self


RoleName = Literal["nurse", "physician", "admin"]


class OidcSettings(_Section):
    """Sign-in of people through the hospital's identity provider (OpenID Connect): the pages
    use the authorisation-code flow with PKCE, the API takes the provider's JWT access tokens
    (streams/access/oidc_tokens.py). Off while ``issuer`` is unset; the users file stays."""

    issuer: str | None = Field(
        None,
        description=(
            "issuer URL of the hospital's identity provider (OpenID Connect; https, http "
            "only on loopback): people sign in through it "
            "([security](security.md#sign-in-through-the-hospitals-identity-provider)); "
            "unset: users-file tokens only"
        ),
    )
    audience: str | None = Field(
        None,
        description=(
            "the `aud` an access token must carry (Bedside's API at the provider); required"
            " with the issuer"
        ),
    )
    client_id: str | None = Field(
        None,
        description="the pages' client id at the provider",
        json_schema_extra={"reference_default": "– (the audience)"},
    )
    client_secret: SecretStr | None = Field(
        None,
        description=(
            "client secret for the code exchange where the provider registers the pages as "
            "a confidential client; unset: public client (PKCE only)"
        ),
    )
    scope: str = Field("openid profile", description="scopes the pages ask for")
    name_claim: str = Field(
        "preferred_username",
        description="claim naming the user in actions and the audit trail (else `sub`)",
    )
    role_claim: str = Field(
        "roles",
        description=(
            "claim with the user's roles, a name or a list; a dotted path reaches nested "
            "claims (Keycloak: `realm_access.roles`)"
        ),
    )
    roles: dict[str, RoleName] = Field(
        default_factory=lambda: {n: n for n in get_args(RoleName)},
        description="JSON object: role claim value → Bedside role; the highest mapped role serves",
    )
    wards_claim: str = Field(
        "wards",
        description="claim (dotted path) with the user's wards, a name or a list (`*`: every ward)",
    )
    leeway_s: int = Field(
        30, ge=0, le=300, description="clock skew allowed on `exp`, `nbf`, `iat` (seconds, ≤ 300)"
    )
    keys_refresh_s: float = Field(
        300.0,
        ge=10,
        description=(
            "how often the provider's signing keys (JWKS) are fetched again; a token with "
            "an unknown key id fetches them too (at most every 10 s)"
        ),
    )

    @property
    def enabled(self) -> bool:
        return self.issuer is not None

    @property
    def pages_client_id(self) -> str | None:
        return self.client_id or self.audience

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if self.issuer is not None:
            url = urlparse(self.issuer)
            loopback = url.hostname in ("localhost", "127.0.0.1", "::1")
            if url.scheme != "https" and not (url.scheme == "http" and loopback):
                msg = (
                    f"BEDSIDE_OIDC__ISSUER must be an https URL (http only on loopback, for "
                    f"tests): {self.issuer!r}"
                )
                raise ValueError(msg)
            if not self.audience:
                msg = "BEDSIDE_OIDC__ISSUER is set: set BEDSIDE_OIDC__AUDIENCE (the API's aud)"
                raise ValueError(msg)
        return self


class PrivacySettings(_Section):
    """Pseudonymised patient ids (streams/access/pseudonyms.py)."""

    pseudonymise: bool = Field(
        False,
        description=(
            "replace every sender's patient id with a keyed pseudonym at ingest "
            "([security](security.md#pseudonymised-patient-ids))"
        ),
    )
    key: SecretStr | None = Field(
        None,
        description=(
            "secret of the pseudonyms (≥ 32 characters), required with `PSEUDONYMISE`; "
            "changing it changes every pseudonym"
        ),
    )

    @model_validator(mode="after")
    def _key_when_on(self) -> PrivacySettings:
        if self.pseudonymise and self.key is None:
            msg = "BEDSIDE_PRIVACY__PSEUDONYMISE needs BEDSIDE_PRIVACY__KEY"
            raise ValueError(msg)
        if self.key is not None:
            problem = secret_problem(self.key.get_secret_value(), MIN_WEB_TOKEN_CHARS)
            if problem:
                msg = f"BEDSIDE_PRIVACY__KEY {problem}: use openssl rand -hex 32"
                raise ValueError(msg)
        return self


class LogSettings(_Section):
    """How the worker writes its log."""

    format: Literal["text", "json"] = Field(
        "text",
        description=(
            "`text`: one readable line per record; `json`: one JSON object per line "
            "(`time`, `level`, `logger`, `message`, `pid`, `exception`, the record's own "
            "fields) for ELK, Loki or Splunk; no patient data either way"
        ),
    )


class StackSettings(_Section):
    """The embedded local stack started by ``bedside stack up``."""

    dir: Path = Field(Path(".bedside"), description="local stack: data, logs and pid files")
    broker: Literal["tansu", "kafka"] = Field(
        "tansu",
        description=(
            "local stack's broker: `tansu` (memory only, starts in a second) or `kafka` "
            "(Apache Kafka, KRaft, from Maven's jars)"
        ),
    )
    broker_port: int = Field(
        9092,
        ge=1,
        le=65435,
        description=(
            "local stack: broker port on 127.0.0.1 (Kafka node *i*: this + *i* − 1; its "
            "controller: + 100)"
        ),
    )
    kafka_nodes: int = Field(
        1,
        ge=1,
        le=5,
        description=(
            "local stack with `kafka`: nodes (1–5); topics replicated min(3, nodes) times, "
            "`min.insync.replicas` min(2, nodes)"
        ),
    )
    kafka_heap_mb: int = Field(
        384, ge=128, le=8192, description="local stack with `kafka`: heap of each node"
    )
    tsdb_port: int = Field(
        8086, ge=1, le=65535, description="local stack: time-series server port on 127.0.0.1"
    )
    ready_timeout_s: float = Field(
        30.0, gt=0, description="local stack: seconds to wait for each component's health"
    )


class Settings(BaseSettings):
    """Everything a Bedside process needs to know, from ``BEDSIDE_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    influx: InfluxSettings = InfluxSettings()
    web: WebSettings = WebSettings()
    ingest: IngestSettings = IngestSettings()
    stream: StreamSettings = StreamSettings()
    scoring: ScoringSettings = ScoringSettings()
    worker: WorkerSettings = WorkerSettings()
    stack: StackSettings = StackSettings()
    security: SecuritySettings = SecuritySettings()
    oidc: OidcSettings = OidcSettings()
    privacy: PrivacySettings = PrivacySettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _signing_key_beyond_loopback(self) -> Settings:
        if not self.web.is_loopback and self.security.signing_key is None:
            msg = f"web.host={self.web.host} is not loopback: set BEDSIDE_SECURITY__SIGNING_KEY"
            raise ValueError(msg)
        return self


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; keyword overrides (e.g. CLI flags) win."""
    return Settings(**overrides)


def env_var(*path: str) -> str:
    """Name of the environment variable behind a settings path, e.g. ``('kafka', 'bootstrap')``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(p.upper() for p in path)


def iter_setting_env_vars(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> list[str]:
    """Every ``BEDSIDE_*`` variable a setting can be read from (for docs and validation)."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(iter_setting_env_vars(annotation, (*prefix, name)))
        else:
            names.append(env_var(*prefix, name))
    return names


def _written(value: Any) -> str:
    """A default as the configuration reference writes it."""
    if value is None:
        return "–"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float, str, Path)):
        return f"`{value}`"
    if isinstance(value, (list, dict, tuple)):
        return f"`{json.dumps(value, separators=(',', ':'))}`"
    msg = f"no written form for the default {value!r}: give the field a reference_default"
    raise TypeError(msg)


def setting_reference(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> list[tuple[str, str, str]]:
    """(variable, default as written, meaning) of every setting, in the settings' order: the
    configuration reference (``bedside settings``; docs/configuration.md) is made of it."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(setting_reference(annotation, (*prefix, name)))
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        shown = extra.get("reference_default")
        if not isinstance(shown, str):
            shown = _written(field.get_default(call_default_factory=True))
        if not field.description:
            msg = f"{env_var(*prefix, name)} has no description for the reference"
            raise ValueError(msg)
        rows.append((env_var(*prefix, name), shown, field.description))
    return rows


def reference_table() -> str:
    """The configuration reference as a Markdown table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {shown} | {meaning} |" for name, shown, meaning in setting_reference()]
    return "\n".join(lines) + "\n"


REFERENCE_START = "<!-- generated by `bedside settings --write"
REFERENCE_END = "<!-- end of the generated table -->"


def with_reference(page: str) -> str:
    """``page`` (docs/configuration.md) with its generated table replaced by the settings'
    current one; a page without the markers is refused."""
    start, end = page.find(REFERENCE_START), page.find(REFERENCE_END)
    if start < 0 or end < start:
        msg = f"no generated table to replace (markers {REFERENCE_START!r} ... {REFERENCE_END!r})"
        raise ValueError(msg)
    after_marker = page.index("\n", start) + 1
    return page[:after_marker] + reference_table() + page[end:]
