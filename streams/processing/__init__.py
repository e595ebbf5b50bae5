"""The per-patient core: the pipeline (``pipeline``: one call per kind of event, each
returning finished, sealed outputs), containment (``containment``), the patient's state and
its stored form (``state``, ``codec``: only this package writes a patient's state), the
batch step (``batch``), the checkpoint order (``checkpoint``) and the typed ports they talk
to (``ports``). Plain typed code, unit-tested with the in-memory fakes of
``tests/support/fakes.py``; ``streams.engine.stream`` adapts Faust to it.

Imports the rooms below it (alerts, scoring, windows, rules, ingest, schemas, access,
sinks, patients, settings), never ``engine``, ``http`` or ``worker``, and no Faust, mode or
aiokafka.

Layers (docs/development.md): ``worker`` on top; ``engine`` and ``http`` beside each other
under it; ``processing`` under both; the rooms below it at the bottom. Nothing imports
upwards; ``tests/unit/test_structure.py`` fails on a cycle between rooms.
"""
