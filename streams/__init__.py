"""Bedside's stream service: Faust app, agents, schemas, windows, scoring runtime, sinks."""
