"""Per-patient state: windows of recent signals and personal baselines.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.
"""
