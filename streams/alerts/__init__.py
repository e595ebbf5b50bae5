"""Alerts: which conditions open and resolve alerts, with reasons and evidence."""
