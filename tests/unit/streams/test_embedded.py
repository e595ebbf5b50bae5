"""The embedded broker profile's guard: it must fail loudly if Faust/aiokafka internals change."""

import pytest

from streams.engine import embedded
from streams.engine.app import UnsupportedGuaranteeError, faust_options
from streams.settings import BrokerProfile, get_settings


def test_patched_internals_match_the_verified_versions() -> None:
    # If this fails after upgrading faust-streaming or aiokafka, the Tansu fixes in
    # streams/engine/embedded.py must be re-verified (integration tests) before updating digests.
    embedded.check_faust_internals()


def test_a_changed_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = dict(embedded._PINNED_SOURCES)
    pinned["Recovery._build_highwaters"] = "0" * 64
    monkeypatch.setattr(embedded, "_PINNED_SOURCES", pinned)
    with pytest.raises(embedded.IncompatibleFaustError, match="Recovery._build_highwaters"):
        embedded.check_faust_internals()
    with pytest.raises(embedded.IncompatibleFaustError):
        faust_options(get_settings(), BrokerProfile.EMBEDDED)


def test_a_missing_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_PINNED_SOURCES", {"Consumer._gone_in_a_new_release": "x"})
    with pytest.raises(embedded.IncompatibleFaustError, match="missing"):
        embedded.check_faust_internals()


def test_embedded_profile_selects_tansu_transport_and_tuning() -> None:
    options = faust_options(get_settings(), BrokerProfile.EMBEDDED)
    assert options["broker"] == ["tansu://127.0.0.1:9092"]
    assert options["broker_session_timeout"] == 6.0
    assert options["broker_heartbeat_interval"] == 1.0
    assert options["broker_rebalance_timeout"] == 10.0
    assert options["processing_guarantee"] == "at_least_once"


def test_kafka_profile_keeps_faust_defaults_but_the_session_timeout() -> None:
    options = faust_options(get_settings(), BrokerProfile.KAFKA)
    assert options["broker"] == ["bedside://127.0.0.1:9092"]  # aiokafka + batch delivery
    # a dead worker's patients wait BEDSIDE_KAFKA__SESSION_TIMEOUT_S, not Faust's 60 s
    assert options["broker_session_timeout"] == 10.0
    assert options["broker_heartbeat_interval"] == pytest.approx(10.0 / 3)
    assert options["processing_guarantee"] == "at_least_once"
    assert "broker_rebalance_timeout" not in options


def test_exactly_once_is_a_kafka_setting_the_embedded_broker_refuses() -> None:
    settings = get_settings(kafka={"processing_guarantee": "exactly_once"})
    assert faust_options(settings, BrokerProfile.KAFKA)["processing_guarantee"] == "exactly_once"
    with pytest.raises(UnsupportedGuaranteeError, match="transactions"):  # the CLI says it
        faust_options(settings, BrokerProfile.EMBEDDED)


def test_auto_must_be_resolved_before_building_options() -> None:
    with pytest.raises(ValueError, match="resolve"):
        faust_options(get_settings(), BrokerProfile.AUTO)


def test_tansu_scheme_resolves_to_the_profile_transport() -> None:
    from faust.transport import by_url

    assert by_url("tansu://127.0.0.1:9092") is embedded.TansuTransport
    assert embedded.TansuTransport.Consumer is embedded.TansuConsumer


def test_both_transports_deliver_the_patient_topics_in_batches() -> None:
    from faust.transport import by_url

    from streams.engine import consumer

    assert by_url("bedside://127.0.0.1:9092") is consumer.Transport
    for transport in (consumer.Transport, embedded.TansuTransport):
        assert issubclass(transport.Consumer, consumer.BatchDelivery)
    assert options_size_limit() == get_settings().ingest.batch_size


def options_size_limit() -> int:
    return int(faust_options(get_settings(), BrokerProfile.KAFKA)["broker_max_poll_records"])


def test_the_replaced_drain_loop_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.engine import consumer

    consumer.check_consumer_internals()
    monkeypatch.setitem(consumer.PINNED, "_drain_messages", "0" * 64)
    with pytest.raises(consumer.IncompatibleConsumerError, match="_drain_messages"):
        consumer.check_consumer_internals()
