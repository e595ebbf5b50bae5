"""Scoring a patient's window: the seam where rules today and ONNX models later plug in.

A scorer is anything with ``score(window, profile) -> Score | None``; the pipeline runs every
registered scorer after a patient's window changed and publishes all scores together on the
risk topic. Scorers use event time (the window's watermark), never the wall clock, so a
replay scores the same.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.

A room below ``processing``: imports only rooms at its level or below, never
``processing``, ``engine``, ``http`` or ``worker`` (``tests/unit/test_structure.py``).
"""
