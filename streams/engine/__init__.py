"""The engine: the only package that imports Faust, mode or aiokafka.

Everything the running service needs from them lives here — the app factory and the worker's
parts in start order (``app``), batch delivery of the patient topics (``consumer``), the
embedded broker profile and the pins of the Faust internals it patches (``embedded``,
``faust_compat``), topics and client options (``broker``), the patient stream's adapter of the
batch step to Faust tables, changelog and acknowledgements (``stream``), the output producer
(``producer``), the series sink's service (``series``), every worker's alert view
(``alert_view``), health and readiness (``health``) and metrics (``metrics``).

It may import every other ``streams`` package. Outside it, only ``streams.http`` touches
Faust, and only its public web API (``faust.web`` views, ``faust.App`` to register them);
``tests/unit/test_structure.py`` holds both rules.
"""
