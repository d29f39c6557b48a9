"""``python -m harness`` (and ``torchrun -m harness``) runs the score-harness CLI."""

from .cli import main

main()
