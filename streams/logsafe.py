"""Log lines an attacker cannot forge and that never carry payloads.

- Every log record's message and string arguments have control characters escaped
  (``\\n`` becomes ``\\x0a``): an alert id or patient id with a newline cannot start a line of
  its own that reads like a CRITICAL record.
- Faust, mode and aiokafka log whole records at DEBUG; their loggers are capped at INFO
  unless ``worker.debug_libraries`` is set.
"""

from __future__ import annotations

import logging
import re
from typing import Any

LIBRARY_LOGGERS = ("faust", "mode", "aiokafka", "kafka", "rocksdict")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters (tab aside) as ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _escaped(value: Any) -> Any:
    return printable(value) if isinstance(value, str) else value


def install(level: str, *, debug_libraries: bool = False) -> None:
    """Escape control characters in every record; cap the libraries' loggers at INFO."""
    previous = logging.getLogRecordFactory()
    if not getattr(previous, "_bedside_escaping", False):

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.msg = _escaped(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(_escaped(a) for a in record.args)
            return record

        factory._bedside_escaping = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    if not debug_libraries:
        floor = max(logging.INFO, logging.getLevelName(level.upper()))
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(floor)
