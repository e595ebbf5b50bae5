"""Typed records at Bedside's edges: the normalised observation and the code catalogue."""
