"""What the worker answers over HTTP: the gateway (``gateway``, with the bearer check), alarm
actions, the event stream and the care-team page (``alarms``), patients (``patients``) and the
front-door checks every state-changing request passes (``guard``). Health, readiness and
metrics are served by ``streams.engine`` (they read Faust's own state).

May import ``faust.web`` and ``faust.App`` (to register views) and ``streams.engine``; nothing
else of Faust, mode or aiokafka.
"""
