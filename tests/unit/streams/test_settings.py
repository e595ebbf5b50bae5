from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import (
    BrokerProfile,
    Settings,
    env_var,
    get_settings,
    iter_setting_env_vars,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in iter_setting_env_vars():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_defaults_name_the_documented_topics() -> None:
    topics = get_settings().topics
    assert topics.all == (
        "bedside.vitals",
        "bedside.glucose",
        "bedside.labs",
        "bedside.deadletter",
        "bedside.risk",
        "bedside.alerts",
        "bedside.alert-acks",
        "bedside.ticks",
    )
    assert topics.partitions == 8


def test_nested_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_KAFKA__BOOTSTRAP", "k1:9093, k2:9093")
    monkeypatch.setenv("BEDSIDE_INFLUX__URL", "https://influx.example:8086")
    monkeypatch.setenv("BEDSIDE_TOPICS__PREFIX", "ward7.")
    monkeypatch.setenv("BEDSIDE_TOPICS__PARTITIONS", "24")
    settings = get_settings()
    assert settings.kafka.servers == ["k1:9093", "k2:9093"]
    assert settings.influx.url == "https://influx.example:8086"
    assert settings.topics.alert_acks == "ward7.alert-acks"
    assert settings.topics.partitions == 24


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BEDSIDE_WORKER__STORE=rocksdb\n")
    assert get_settings().worker.store == "rocksdb"


def test_keyword_overrides_win_over_env_and_merge_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_KAFKA__BOOTSTRAP", "env:9092")
    monkeypatch.setenv("BEDSIDE_KAFKA__PROFILE", "kafka")
    settings = get_settings(kafka={"bootstrap": "flag:9092"})
    assert settings.kafka.bootstrap == "flag:9092"
    assert settings.kafka.profile is BrokerProfile.KAFKA


def test_settings_are_frozen() -> None:
    settings = get_settings()
    with pytest.raises(ValidationError):
        settings.kafka = settings.kafka  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.kafka.bootstrap = "x:1"  # type: ignore[misc]


def test_secrets_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BEDSIDE_KAFKA__SASL_USERNAME", "bedside")
    monkeypatch.setenv("BEDSIDE_KAFKA__SASL_PASSWORD", "kafka-hunter2")
    monkeypatch.setenv("BEDSIDE_INFLUX__TOKEN", "influx-hunter2")
    monkeypatch.setenv("BEDSIDE_WEB__TOKEN", "web-hunter2-" + "k" * 32)
    settings = get_settings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in text
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-hunter2"


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="needs sasl_username and a real sasl_password"):
        get_settings()
    monkeypatch.setenv("BEDSIDE_KAFKA__SASL_USERNAME", "bedside")
    monkeypatch.setenv("BEDSIDE_KAFKA__SASL_PASSWORD", "change-me")
    with pytest.raises(ValidationError, match="not a placeholder"):
        get_settings()


@pytest.mark.parametrize("bootstrap", ["", "nohost", "host:port", ":9092"])
def test_bad_bootstrap_is_refused(monkeypatch: pytest.MonkeyPatch, bootstrap: str) -> None:
    monkeypatch.setenv("BEDSIDE_KAFKA__BOOTSTRAP", bootstrap)
    with pytest.raises(ValidationError):
        get_settings()


def test_web_beyond_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_WEB__HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match="BEDSIDE_WEB__TOKEN"):
        get_settings()
    monkeypatch.setenv("BEDSIDE_WEB__TOKEN", "s3cret-" + "x7" * 16)
    with pytest.raises(ValidationError, match="BEDSIDE_SECURITY__SIGNING_KEY"):
        get_settings()  # actions and the audit chain need one key on every worker
    monkeypatch.setenv("BEDSIDE_SECURITY__SIGNING_KEY", "short")
    with pytest.raises(ValidationError, match="shorter than 32"):
        get_settings()
    monkeypatch.setenv("BEDSIDE_SECURITY__SIGNING_KEY", "k3y-" + "q9" * 16)
    assert not get_settings().web.is_loopback


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("s3cret", "shorter than 32"),
        ("change-me-please", "placeholder"),
        ("replace-me", "placeholder"),
        ("please-change-me-" + "0" * 20, "placeholder"),
        ("." * 40, "placeholder"),
    ],
)
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_empty_short_or_placeholder_web_tokens_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, token: str, why: str, host: str
) -> None:
    # an empty token once served every endpoint without authentication beyond loopback
    monkeypatch.setenv("BEDSIDE_WEB__HOST", host)
    monkeypatch.setenv("BEDSIDE_WEB__TOKEN", token)
    with pytest.raises(ValidationError, match=why):
        get_settings()


def test_nightscout_secrets_must_be_real(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_WEB__NIGHTSCOUT_SECRETS", '{"p-1": "short"}')
    with pytest.raises(ValidationError, match="shorter than 12"):
        get_settings()
    monkeypatch.setenv("BEDSIDE_WEB__NIGHTSCOUT_SECRETS", '{"p-1": "a-long-enough-secret"}')
    assert get_settings().web.nightscout_secrets["p-1"].get_secret_value()


def test_unknown_variables_in_a_section_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_KAFKA__BOOTSTRAPP", "typo:9092")
    with pytest.raises(ValidationError):
        get_settings()


def test_env_var_names() -> None:
    assert env_var("kafka", "bootstrap") == "BEDSIDE_KAFKA__BOOTSTRAP"
    names = iter_setting_env_vars()
    assert "BEDSIDE_INFLUX__URL" in names
    assert "BEDSIDE_STACK__BROKER_PORT" in names
    assert len(names) == len(set(names))


def test_building_settings_does_not_happen_at_import() -> None:
    import streams.settings as module

    assert not any(isinstance(value, Settings) for value in vars(module).values())


def test_tls_and_pseudonyms_are_refused_half_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEDSIDE_WEB__TLS_CERTFILE", "/etc/bedside/cert.pem")
    with pytest.raises(ValidationError, match="BEDSIDE_WEB__TLS_KEYFILE"):
        get_settings()
    monkeypatch.delenv("BEDSIDE_WEB__TLS_CERTFILE")
    monkeypatch.setenv("BEDSIDE_PRIVACY__PSEUDONYMISE", "true")
    with pytest.raises(ValidationError, match="BEDSIDE_PRIVACY__KEY"):
        get_settings()
    monkeypatch.setenv("BEDSIDE_PRIVACY__KEY", "change-me")
    with pytest.raises(ValidationError, match="placeholder"):
        get_settings()
    monkeypatch.setenv("BEDSIDE_PRIVACY__KEY", "p5eud0-" + "k" * 32)
    assert get_settings().privacy.pseudonymise
