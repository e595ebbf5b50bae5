"""Clinical scores and rules: pure functions over plain values, no I/O.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.
"""
