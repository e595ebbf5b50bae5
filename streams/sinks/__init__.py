"""Sinks: idempotent writes whose success gates the Kafka commit."""
