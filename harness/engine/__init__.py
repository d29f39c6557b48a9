"""The evaluation engine's internals: AutoAttack's stages over pooled survivors, run resumably in-process, in worker processes or over torchrun."""
