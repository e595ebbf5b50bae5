"""Who may see and do what: named users with roles and wards, signed care-team actions, and
the tamper-evident audit chain of alarm transitions.

A room below ``processing``: imports only rooms at its level or below, never
``processing``, ``engine``, ``http`` or ``worker`` (``tests/unit/test_structure.py``).
"""
