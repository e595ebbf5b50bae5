"""Agents, one module per domain stream; the list in start order is ``streams.app.AGENT_MODULES``."""
