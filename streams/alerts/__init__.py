"""Alerts: which conditions open and resolve alerts, with reasons and evidence.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.

A room below ``processing``: imports only rooms at its level or below, never
``processing``, ``engine``, ``http`` or ``worker`` (``tests/unit/test_structure.py``).
"""
