"""Log lines an attacker cannot forge and that never carry payloads.

- Every log record's string arguments have control characters escaped (``\\n`` becomes
  ``\\x0a``): an alert id or patient id with a newline cannot start a line of its own that
  reads like a CRITICAL record.
- Faust, mode and aiokafka log whole records at DEBUG; their loggers are capped at INFO
  unless ``worker.debug_libraries`` is set.
- Their warnings and errors are rate limited per message: a broker outage logs each kind
  of failure once per ``REPEAT_S`` with the count of the ones left out, not thousands of
  lines a minute.
- With ``log.format = json`` every line is one JSON object (:class:`JsonFormatter`) that log
  pipelines read without parsing text.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

LIBRARY_LOGGERS = ("faust", "mode", "aiokafka", "kafka", "rocksdict", "asyncio")
REPEAT_S = 60.0
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters (tab aside) as ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _escaped(value: Any) -> Any:
    return printable(value) if isinstance(value, str) else value


class RepeatLimit(logging.Filter):
    """Lets a library's warning or error through once per ``every_s`` per message template
    (the rest are counted and the count is told with the next one let through)."""

    def __init__(self, every_s: float = REPEAT_S) -> None:
        super().__init__()
        self.every_s = every_s
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(LIBRARY_LOGGERS):
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.every_s:
            self._seen[key] = (last, suppressed + 1)
            return False
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} [{suppressed} like this in the last {self.every_s:.0f} s]"
        return True


#: attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601, milliseconds), ``level``,
    ``logger``, ``message``, ``pid``, ``exception`` (the traceback, when there is one) and the
    record's own fields (``extra=``). Messages hold no patient data, as in text form."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        return orjson.dumps(entry, default=str).decode()


def use_json(handlers: list[logging.Handler]) -> None:
    """Format every record of ``handlers`` as one JSON object per line."""
    for handler in handlers:
        handler.setFormatter(JsonFormatter())


def limit_repeats(handlers: list[logging.Handler]) -> None:
    """Install one :class:`RepeatLimit` on each handler (idempotent)."""
    for handler in handlers:
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(RepeatLimit())


def install(level: str, *, debug_libraries: bool = False) -> None:
    """Escape control characters in every record; cap the libraries' loggers at INFO."""
    previous = logging.getLogRecordFactory()
    if not getattr(previous, "_bedside_escaping", False):

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            # arguments only: messages are ours or a library's (Faust's tables span lines)
            if isinstance(record.args, tuple):
                record.args = tuple(_escaped(a) for a in record.args)
            return record

        factory._bedside_escaping = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    if not debug_libraries:
        floor = max(logging.INFO, logging.getLevelName(level.upper()))
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(floor)
