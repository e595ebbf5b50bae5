"""Typed configuration for every Bedside process.

One frozen :class:`Settings` object, read from ``BEDSIDE_*`` environment variables
(nested sections joined with ``__``, e.g. ``BEDSIDE_KAFKA__BOOTSTRAP``) and an optional
``.env`` file. Built by :func:`get_settings`, never at import time, and passed in.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
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
        "127.0.0.1:9092", description="Comma-separated host:port list of bootstrap brokers."
    )
    profile: BrokerProfile = Field(
        BrokerProfile.AUTO, description="auto | embedded | kafka (see 'Broker profiles')."
    )
    embedded_cluster_id: str = Field(
        "bedside-embedded",
        description="Cluster id the embedded broker is started with; 'auto' looks for it.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certs.")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS).")
    ssl_key_password: SecretStr | None = None
    session_timeout_s: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description=(
            "How long the consumer group waits for a silent worker before its partitions (its "
            "patients) go to the others: the alarm gap when a worker dies. Heartbeats are sent "
            "every third of it from the consumer's own thread. The brokers' "
            "group.min.session.timeout.ms (6 s by default) is the floor."
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

    prefix: str = Field("bedside.", description="Prepended to every Bedside topic name.")
    partitions: int = Field(8, ge=1, le=1024, description="Partitions of every Bedside topic.")
    replication_factor: int = Field(1, ge=1, le=7)

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

    url: str = Field("http://127.0.0.1:8086", description="Base URL of the InfluxDB v2 API.")
    token: SecretStr = Field(
        SecretStr("bedside-local"),
        description="API token. The local stack accepts any value; production needs a real one.",
    )
    org: str = "bedside"
    bucket: str = "bedside"
    timeout_ms: int = Field(10_000, ge=100)
    retention_days: int = Field(
        90,
        ge=0,
        description="The bucket's retention: points older than this are not written (the "
        "database would drop them), only counted. 0: no limit. The shipped bucket keeps 90 days.",
    )
    read_api: Literal["auto", "flux", "prometheus"] = Field(
        "auto",
        description="How series are read back for the care-team page: flux (InfluxDB 2.x), "
        "prometheus (VictoriaMetrics), auto (ask the server).",
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificate(s) that sign an https server's certificate (default: the "
        "system's CAs).",
    )


class WebSettings(_Section):
    """The worker's HTTP server (gateway, metrics, care-team page)."""

    host: str = Field("127.0.0.1", description="Interface the worker's web server binds to.")
    port: int = Field(6066, ge=1, le=65535)
    token: SecretStr | None = Field(
        None, description="Bearer token for the HTTP API; required when host is not loopback."
    )
    nightscout_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON object patient id -> Nightscout API secret (uploaders send its SHA-1).",
    )
    nightscout_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON object patient id -> Nightscout access token (?token= or Bearer).",
    )
    publish_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest the gateway waits for the broker before answering 503.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="JSON list of host names the web server answers to (Host and Origin "
        "headers), beside loopback names and web.host: DNS-rebinding and CSRF guard.",
    )
    tls_certfile: Path | None = Field(
        None, description="Certificate chain (PEM) of the web server: it serves HTTPS."
    )
    tls_keyfile: Path | None = Field(None, description="Private key (PEM) of tls_certfile.")
    auth: Literal["users", "none"] = Field(
        "users",
        description="Who may read patient data and act on alarms: named users of the users "
        "file (default), or none (development only: anyone, logged as a warning at start).",
    )
    users_file: Path | None = Field(
        None,
        description="JSON users file (streams/access/users.py; `bedside users add` writes it).",
    )
    default_ward: str = Field(
        "general",
        min_length=1,
        description="The ward of a patient the patient settings file gives none.",
    )
    stream_max_s: float = Field(
        3600.0,
        gt=0,
        description="Longest a page's live event stream lasts; the page then reconnects (its "
        "sign-in checked again) and reloads what it shows.",
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
        1 << 20, ge=1024, description="Records (and HTTP bodies) over this size are rejected."
    )
    max_entries: int = Field(
        1000, ge=1, description="Bundle entries or list items over this count are rejected."
    )
    batch_size: int = Field(
        10_000,
        ge=1,
        description="Most records fetched and processed as one batch (whatever has arrived, "
        "up to this many; Faust's broker_max_poll_records).",
    )
    max_unstored_points: int = Field(
        2_000_000,
        ge=1,
        description="Most time-series points computed but not yet accepted by the database "
        "(an outage): beyond it the stream waits. Alarms flow until then.",
    )
    max_unstored_batches: int = Field(
        10_000, ge=1, description="Most batches computed but not yet stored (see above)."
    )
    window_cache: int = Field(
        20_000,
        ge=0,
        description="Patients' windows kept decoded between batches (the most recently "
        "processed): a patient seen again is not decoded from the table again.",
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
        7200, ge=0, description="Events older than this behind a patient's newest are late."
    )
    max_vital_samples: int = Field(288, ge=8, description="Bound of each vital-sign buffer.")
    news2_max_age_s: int = Field(
        14400, ge=60, description="A vital older than this does not count towards NEWS2."
    )
    vitals_stale_s: int = Field(
        21600, ge=60, description="No vital sign for this long opens a vitals_stale alarm."
    )
    tick_interval_s: float = Field(
        30.0, gt=0, description="How often time-driven alarm transitions are evaluated."
    )
    degraded_after_s: float = Field(
        30.0,
        gt=0,
        description="Data not processed or stored for this long: a monitoring_degraded alert "
        "event and /ready false.",
    )
    spo2_scale2_patients: list[str] = Field(
        default_factory=list,
        description="Patients scored on NEWS2 SpO2 scale 2 (hypercapnic respiratory failure).",
    )
    glucose_targets: dict[str, GlucoseTargetSettings] = Field(
        default_factory=dict, description="JSON: patient id -> glucose thresholds in mg/dL."
    )
    patient_settings_file: Path | None = Field(
        None,
        description="JSON file: patient id -> glucose targets, SpO2 scale, quiet hours "
        "(see streams/patients.py); read at start, validated.",
    )


ModelName = Literal["glucose", "deterioration"]


class ScoringSettings(_Section):
    """ONNX risk models: where they come from, where they run, how requests are batched."""

    models: list[ModelName] = Field(
        default_factory=lambda: list(get_args(ModelName)),
        description="JSON list of model families to score with (empty: rules only).",
    )
    model_dir: Path | None = Field(
        None,
        description="Model directory <name>/<version>/{model.onnx,manifest.json}; "
        "unset: the models shipped in the package.",
    )
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="JSON: model name -> pinned version (default: the newest in model_dir).",
    )
    shadow: dict[str, str] = Field(
        default_factory=dict,
        description="JSON: model name -> candidate version scored beside the primary, "
        "published on the risk topic, never alerting.",
    )
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime provider: auto uses CUDA when a GPU is present."
    )
    intra_op_threads: int = Field(1, ge=0, description="ONNX Runtime threads per call (0: ORT's).")
    max_batch: int = Field(256, ge=1, le=65536, description="Most windows scored in one call.")
    threaded: bool = Field(
        False,
        description="Run model calls on a worker thread instead of the event loop "
        "(slower on a 2-core box: see streams/scoring/batching.py).",
    )
    reload_interval_s: float = Field(
        30.0, gt=0, description="How often model_dir is checked for new versions."
    )


class WorkerSettings(_Section):
    """The Faust worker process."""

    app_id: str = Field("bedside", description="Faust app id: the consumer group and table prefix.")
    store: Literal["memory", "rocksdb"] = Field(
        "memory", description="Table store: memory for development, rocksdb in production."
    )
    data_dir: Path = Field(Path(".bedside/worker"), description="Faust data dir (RocksDB files).")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    debug_libraries: bool = Field(
        False,
        description="Let Faust, mode and aiokafka log at DEBUG (they print whole records, "
        "i.e. patient data): off unless you are debugging them.",
    )


class SecuritySettings(_Section):
    """Signatures of care-team actions and of the audit chain (streams/access/signing.py)."""

    signing_key: SecretStr | None = Field(
        None,
        description="Secret that signs care-team actions and chains audit records; the same "
        "on every worker. Unset: a random one per process (loopback development only).",
    )
    unsigned_actions: bool = Field(
        False,
        description="Apply actions on the alert-acks topic without the gateway's signature "
        "(only where Kafka ACLs restrict who may write that topic).",
    )
    action_max_age_s: int = Field(
        900,
        ge=10,
        description="A signed care-team action older than this when the worker applies it "
        "is refused (dead letter: replayed).",
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
        description="Issuer URL of the identity provider (its /.well-known/openid-configuration "
        "names the keys and endpoints); unset: no OpenID Connect sign-in.",
    )
    audience: str | None = Field(
        None, description="The aud an access token must carry (Bedside's API); needed with issuer."
    )
    client_id: str | None = Field(
        None, description="The pages' client id at the provider; unset: the audience."
    )
    client_secret: SecretStr | None = Field(
        None,
        description="Client secret for the code exchange, where the provider treats the pages "
        "as a confidential client; unset: a public client (PKCE only).",
    )
    scope: str = Field("openid profile", description="Scopes the pages ask for at sign-in.")
    name_claim: str = Field(
        "preferred_username", description="Claim naming the user (else sub) in logs and actions."
    )
    role_claim: str = Field(
        "roles",
        description="Claim (a dotted path for nested ones, e.g. realm_access.roles) with the "
        "user's roles: a name or a list; the highest one that roles maps serves.",
    )
    roles: dict[str, RoleName] = Field(
        default_factory=lambda: {n: n for n in get_args(RoleName)},
        description="JSON object: role claim value -> Bedside role.",
    )
    wards_claim: str = Field(
        "wards", description="Claim (dotted path) with the user's wards: a name or a list."
    )
    leeway_s: int = Field(
        30, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat, in seconds."
    )
    keys_refresh_s: float = Field(
        300.0,
        ge=10,
        description="How often the provider's signing keys (JWKS) are fetched again; an unknown "
        "key id also fetches them (at most every 10 s).",
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
        description="Replace every sender's patient id with a keyed pseudonym at ingest.",
    )
    key: SecretStr | None = Field(
        None,
        description="Secret of the pseudonyms (>= 32 characters); changing it changes every "
        "pseudonym (see docs/security.md: key rotation).",
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
            "text: one human-readable line per record; json: one JSON object per line (time, "
            "level, logger, message, pid and the record's own fields) for ELK, Loki or Splunk."
        ),
    )


class StackSettings(_Section):
    """The embedded local stack started by ``bedside stack up``."""

    dir: Path = Field(Path(".bedside"), description="Data, logs and pid files of the local stack.")
    broker: Literal["tansu", "kafka"] = Field(
        "tansu", description="The stack's broker: Tansu (memory only) or Apache Kafka (KRaft)."
    )
    broker_port: int = Field(9092, ge=1, le=65435)
    kafka_nodes: int = Field(1, ge=1, le=5, description="Apache Kafka nodes (broker=kafka).")
    kafka_heap_mb: int = Field(384, ge=128, le=8192, description="Heap of each Kafka node.")
    tsdb_port: int = Field(8086, ge=1, le=65535)
    ready_timeout_s: float = Field(30.0, gt=0)


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
