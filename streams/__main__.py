"""``python -m streams worker`` runs a worker; any ``bedside`` command works the same way."""

from .cli import main

main(prog_name="python -m streams")
