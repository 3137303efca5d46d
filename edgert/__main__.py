"""``python -m edgert`` runs the CLI (same as the ``edgert`` command)."""

from .cli import main

main()
