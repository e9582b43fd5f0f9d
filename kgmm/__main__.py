"""``python -m kgmm`` runs the command line."""

from kgmm.cli import main

main()
