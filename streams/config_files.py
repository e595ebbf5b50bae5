"""Reading the JSON files an operator writes (patient settings, users): errors that say where."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

T = TypeVar("T")


def read_json_file(
    path: Path, validate: Callable[[bytes], T], what: str, error: type[ValueError]
) -> T:
    """``validate(bytes of path)``; an unreadable or invalid file raises ``error`` naming
    ``what``, the path and the first five problems with their places."""
    try:
        return validate(path.read_bytes())
    except OSError as problem:
        msg = f"{what} {path}: {problem.strerror or problem}"
        raise error(msg) from problem
    except ValidationError as invalid:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}"
            for e in invalid.errors(include_url=False, include_input=False)[:5]
        )
        msg = f"{what} {path}: {problems}"
        raise error(msg) from invalid
