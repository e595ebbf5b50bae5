"""Log lines as a log pipeline reads them (``log.format = json``)."""

from __future__ import annotations

import io
import json
import logging

from streams.logsafe import JsonFormatter, use_json


def logged(emit: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    use_json([handler])
    logger = logging.getLogger("bedside.test.json")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_object_with_its_fields() -> None:
    [entry] = logged(lambda log: log.warning("stored %d points", 12, extra={"partition": 3}))
    assert entry["level"] == "WARNING" and entry["logger"] == "bedside.test.json"
    assert entry["message"] == "stored 12 points" and entry["partition"] == 3
    assert entry["time"].endswith("+00:00") and isinstance(entry["pid"], int)


def test_a_multi_line_message_and_a_traceback_stay_on_one_line() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            log.exception("table\n+---+\n| x |")

    [entry] = logged(emit)
    assert entry["message"] == "table\n+---+\n| x |"
    assert "ValueError: bad" in entry["exception"]


def test_a_value_json_cannot_write_is_written_as_text() -> None:
    [entry] = logged(lambda log: log.info("x", extra={"where": {1, 2}}))
    assert entry["where"] == "{1, 2}"  # a set: JSON has none
    assert JsonFormatter().format(logging.makeLogRecord({"msg": "m"})).startswith("{")
