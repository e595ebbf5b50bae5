"""A patient id inside the read-back queries: it can never end the string it sits in."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from streams.sinks.reader import _flux_string, _label


@given(st.text(alphabet=st.sampled_from('ab\\\\"x0\n\x7f¼'), max_size=40) | st.text(max_size=40))
def test_a_label_value_is_one_go_string_whatever_it_holds(value: str) -> None:
    quoted = f'"{_label(value)}"'
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in quoted)
    assert go_unquote(quoted) == value


def go_unquote(quoted: str) -> str:
    """Go's strconv.Unquote for the escapes ``_label`` writes (\\\\, \\", \\xNN)."""
    body = quoted[1:-1]
    assert not re.search(r'(?<!\\)(?:\\\\)*"', body), "an unescaped quote ends the string"
    return re.sub(r"\\(x[0-9a-f]{2}|.)", lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 3
                  else m[1], body)  # fmt: skip


def test_flux_strings_escape_quotes_newlines_and_interpolation() -> None:
    assert _flux_string('a"b\\c\nd${r._value}') == 'a\\"b\\\\c\\nd\\${r._value}'
