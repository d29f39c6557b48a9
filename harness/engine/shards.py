"""--shard K/N: one slice of an evaluation's images, evaluated on its own and merged later."""

from __future__ import annotations

import re

from zoo.errors import ConfigError


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """Parse ``"K/N"`` (K counted from 0) into ``(K, N)``."""
    if shard is None:
        return None
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ConfigError(f"cannot parse --shard '{shard}'; write K/N with 0 <= K < N, e.g. 0/4")
        shard = (int(m.group(1)), int(m.group(2)))
    k, n = shard
    if n < 1 or not 0 <= k < n:
        raise ConfigError(f"--shard {k}/{n} is out of range; K counts from 0 to N-1")
    return k, n


def shard_range(n_examples: int, batch_size: int, shard: tuple[int, int] | None) -> range:
    """The examples of shard K of N: a contiguous run of whole batches (all examples without a shard)."""
    if shard is None:
        return range(n_examples)
    k, n = shard
    n_batches = -(-n_examples // batch_size)
    lo, hi = k * n_batches // n * batch_size, (k + 1) * n_batches // n * batch_size
    return range(min(lo, n_examples), min(hi, n_examples))
