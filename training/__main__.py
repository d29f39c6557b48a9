"""`python -m training` (and `torchrun ... -m training`) runs score-train."""

from .cli import main

main(prog_name="score-train")
