"""Deployment: the embedded local stack (``bedside stack``) and production manifests."""
