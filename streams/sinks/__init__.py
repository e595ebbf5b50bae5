"""Sinks: line protocol for the time-series server (``lines``) and the series reader the
charts use (``reader``); the writing service, whose success gates the commit, is
``streams.engine.series``.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.

A room below ``processing``: imports only rooms at its level or below, never
``processing``, ``engine``, ``http`` or ``worker`` (``tests/unit/test_structure.py``).
"""
