"""The stream's core: the batch step (``batch``), the checkpoint order (``checkpoint``) and
the typed ports they talk to (``ports``). Plain typed code, unit-tested with the in-memory
fakes of ``tests/support/fakes.py``; ``streams.engine.stream`` adapts Faust to it.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.
"""
