"""The engine: the only package that imports Faust, mode or aiokafka.

Everything the running service needs from them lives here — the app factory and the worker
process (``app``), batch delivery of the patient topics (``consumer``), the embedded broker
profile and the pins of the Faust internals it patches (``embedded``, ``faust_compat``),
topics and client options (``broker``), the patient stream's adapter of the batch step to
Faust tables, changelog and acknowledgements (``stream``), the output producer
(``producer``), the series sink's service (``series``), every worker's views of the alerts
and risk topics (``alert_view``, ``risk_view``), health and readiness (``health``) and
metrics (``metrics``). The worker is wired from these parts in ``streams.worker``.

Imports ``processing`` and the rooms below it; never ``http`` or ``worker``. Outside it, only
``streams.http`` touches Faust, and only its public web API (``faust.web`` views,
``faust.App`` to register them).

Layers (docs/development.md): ``worker`` on top; ``engine`` and ``http`` beside each other
under it; ``processing`` under both; the rooms below it at the bottom. Nothing imports
upwards; ``tests/unit/test_structure.py`` fails on a cycle between rooms.
"""
