"""Bedside's stream service. ``engine`` is the one package that imports Faust, mode and
aiokafka; ``http`` serves the web endpoints; the rest is plain typed code."""
