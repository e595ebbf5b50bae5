"""Decoding what integrations send (native JSON, FHIR R4, Nightscout) into observations.

Pure functions: bytes in, observations and problems out. Every input ends as at least one
observation or a problem with a reason; nothing raises out of :func:`decode_record`.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.

A room below ``processing``: imports only rooms at its level or below, never
``processing``, ``engine``, ``http`` or ``worker`` (``tests/unit/test_structure.py``).
"""
