"""``python -m harness`` (and ``torchrun -m harness``) runs the score-harness CLI."""

from .cli import main

if __name__ == "__main__":  # not when a worker process re-imports the main module
    main()
