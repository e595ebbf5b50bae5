"""Agents, one module per domain stream; start order: ``streams.app.AGENT_MODULES``."""
