"""Clinical scores and rules: pure functions over plain values, no I/O.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.

A room below ``processing``: imports only rooms at its level or below, never
``processing``, ``engine``, ``http`` or ``worker`` (``tests/unit/test_structure.py``).
"""
