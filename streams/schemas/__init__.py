"""Typed records at Bedside's edges: the normalised observation and the code catalogue.

Imports no Faust, mode or aiokafka (``tests/unit/test_structure.py``); only
``streams.engine`` does.
"""
