"""Alerts: which conditions open and resolve alerts, with reasons and evidence.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.
"""
