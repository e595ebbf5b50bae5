import base64
from collections.abc import Callable

from streams.ingest.decode import IngestLimits
from streams.ingest.problems import DeadLetter, DecodeResult, Reason

from .conftest import NOW

Decode = Callable[..., DecodeResult]


def test_malformed_json(decode: Decode) -> None:
    assert decode(b"{'single': quotes}").problems[0].reason is Reason.MALFORMED_JSON
    assert decode(b"\xff\xfe").problems[0].reason is Reason.MALFORMED_JSON


def test_too_large_is_refused_before_parsing(decode: Decode) -> None:
    result = decode(b"[" + b"1," * 2000 + b"1]", limits=IngestLimits(max_record_bytes=1024))
    assert result.problems[0].reason is Reason.TOO_LARGE


def test_json_that_is_no_document(decode: Decode) -> None:
    for raw in (b"42", b'"text"', b"null", b"[]"):
        result = decode(raw)
        assert not result.observations and result.problems[0].reason is Reason.SCHEMA, raw


def test_dead_letter_carries_original_bytes_and_coordinates(decode: Decode) -> None:
    raw = b'{"patient_id": "syn-1", "code": "8867-4", "value": 1, "unit": "/min"}'
    result = decode(raw)
    letter = DeadLetter.build(
        result, raw, topic="bedside.vitals", partition=3, offset=99, key=b"syn-1", received_at=NOW
    )
    assert base64.b64decode(letter.original_b64) == raw
    assert (letter.source_topic, letter.partition, letter.offset) == ("bedside.vitals", 3, 99)
    assert letter.reason is Reason.TIME and "effective_at" in letter.message
    assert base64.b64decode(letter.key_b64 or "") == b"syn-1"
    assert letter.accepted_observations == 0


def test_a_dead_letter_never_exceeds_the_producer_limit(decode: Decode) -> None:
    # an 800 KB malformed record once made a dead letter over 1 MiB: the worker died in a loop
    raw = b'{"patient_id": "' + b"x" * 800_000 + b'"'
    result = decode(raw)
    letter = DeadLetter.build(
        result, raw, topic="bedside.labs", partition=0, offset=7, key=b"k" * 5000, received_at=NOW
    )
    encoded = letter.model_dump_json().encode()
    assert len(encoded) < 512 * 1024
    assert letter.original_truncated and letter.original_bytes == len(raw)
    assert letter.original_sha256 == __import__("hashlib").sha256(raw).hexdigest()
    assert raw.startswith(base64.b64decode(letter.original_b64))


def test_a_small_dead_letter_is_complete(decode: Decode) -> None:
    raw = b"not json"
    letter = DeadLetter.build(
        decode(raw), raw, topic="t", partition=0, offset=0, key=None, received_at=NOW
    )
    assert not letter.original_truncated and base64.b64decode(letter.original_b64) == raw
    assert letter.problems_total == len(letter.problems) == 1
