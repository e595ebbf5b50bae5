"""What the worker answers over HTTP: the gateway (``gateway``, with the bearer check),
alarm routes and their event stream (``alarm_routes``), the ward and care-team pages
(``pages``), a patient's stored state (``patient_window``), who is calling (``signin``),
the front-door checks every state-changing request passes (``guard``) and the pages'
server-sent events (``sse``). Health, readiness and metrics are served by ``streams.engine``
(they read Faust's own state).

Each route is handed what it uses by ``streams.worker``; the engine's views, producer and
table reach it only through the shapes of ``ports``. Imports ``processing`` and the rooms
below it, ``faust.web`` and ``faust.App`` (to register views); never ``engine`` or
``worker``.

Layers (docs/development.md): ``worker`` on top; ``engine`` and ``http`` beside each other
under it; ``processing`` under both; the rooms below it at the bottom. Nothing imports
upwards; ``tests/unit/test_structure.py`` fails on a cycle between rooms.
"""
