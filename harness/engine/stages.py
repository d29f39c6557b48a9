"""AutoAttack's stages over pooled survivors, as chunk tasks handed out the moment they are fixed.

One bare ``AutoAttack(...).run_standard_evaluation(x, y, batch_size=B)`` classifies
``x`` in chunks of B in index order; then, for each attack of the version, it cuts the
examples still robust, over the whole of ``x`` in index order, into chunks of B and
attacks each chunk, reseeding every chunk with the same seed. An example's result
therefore depends on the chunk it lands in, and a chunk of one attack is fixed as soon
as the previous attack's results are known for a prefix of the examples that holds its
members. :class:`StagePlan` forms each chunk at that moment, so the chunks of one attack
can run while the previous attack is still busy further along the examples: the same
chunks, hence the same per-example results, as one bare call.

Levels: 0 is the clean pass; ``1 + j * A + a`` is attack ``a`` (of ``A``) at eps ``j``.
Over an increasing eps list, eps ``j + 1`` starts from the examples still robust after
eps ``j`` (nested; the clean pass is not repeated).
"""

from __future__ import annotations

import dataclasses

import numpy as np

UNKNOWN, BROKEN, ROBUST = -1, 0, 1


@dataclasses.dataclass(frozen=True)
class Task:
    """One chunk of one level of one segment: the examples it holds, in index order."""

    segment: tuple[int, int]     # [start, stop) of the examples attacked as one AutoAttack call
    level: int
    chunk: int
    members: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"chunk {self.chunk} of level {self.level} of examples {self.segment[0]}..{self.segment[1] - 1}"


class StagePlan:
    """The levels of one segment ``[start, stop)`` of the examples, with every example's status after each."""

    def __init__(self, start: int, stop: int, batch_size: int, n_levels: int):
        if stop < start:
            raise ValueError(f"negative segment [{start}, {stop})")
        self.segment, self.start, self.stop, self.batch_size = (start, stop), start, stop, batch_size
        self.n_levels = n_levels
        n = stop - start
        self.status = np.full((n_levels, n), UNKNOWN, dtype=np.int8)   # status after each level, by position
        self._scan = [0] * n_levels           # how far the previous level's statuses have been read
        self._buffer: list[list[int]] = [[] for _ in range(n_levels)]
        self._formed = [0] * n_levels          # chunks formed so far, per level
        self._closed = [False] * n_levels      # every chunk of the level formed
        self._open: set[tuple[int, int]] = set()   # (level, chunk) handed out, not finished
        self._ready: list[Task] = []
        for lo in range(start, stop, batch_size):
            self._emit(0, tuple(range(lo, min(lo + batch_size, stop))))
        self._closed[0] = True
        self._advance()  # an empty segment (a shard with no batch) is done at once

    def _emit(self, level: int, members: tuple[int, ...]) -> None:
        task = Task(self.segment, level, self._formed[level], members)
        self._formed[level] += 1
        self._open.add((level, task.chunk))
        self._ready.append(task)

    def take_ready(self) -> list[Task]:
        """The tasks formed since the last call, in the order they were formed."""
        ready, self._ready = self._ready, []
        return ready

    def finish(self, task: Task, robust) -> None:
        """Record a finished task: ``robust[k]`` says whether member k is still robust after its level."""
        if (task.level, task.chunk) not in self._open:
            raise ValueError(f"task {task.name} was not handed out or is finished already")
        if len(robust) != len(task.members):
            raise ValueError(f"task {task.name} has {len(task.members)} members, got {len(robust)} results")
        self._open.discard((task.level, task.chunk))
        row = self.status[task.level]
        for i, r in zip(task.members, robust):
            row[i - self.start] = ROBUST if bool(r) else BROKEN
        self._advance()

    def _advance(self) -> None:
        n, size = self.stop - self.start, self.batch_size
        for level in range(1, self.n_levels):
            if self._closed[level]:
                continue
            before, here, buffer = self.status[level - 1], self.status[level], self._buffer[level]
            pos = self._scan[level]
            while pos < n and before[pos] != UNKNOWN:
                if before[pos] == ROBUST:
                    buffer.append(self.start + pos)
                    if len(buffer) == size:
                        self._emit(level, tuple(buffer))
                        buffer.clear()
                else:
                    here[pos] = BROKEN   # broken at an earlier level stays broken
                pos += 1
            self._scan[level] = pos
            if pos == n:
                if buffer:
                    self._emit(level, tuple(buffer))
                    buffer.clear()
                self._closed[level] = True

    @property
    def done(self) -> bool:
        return all(self._closed) and not self._open

    def level_progress(self, level: int) -> tuple[int, int, bool]:
        """(chunks finished, chunks formed, every chunk formed) of one level."""
        open_here = sum(1 for lv, _ in self._open if lv == level)
        return self._formed[level] - open_here, self._formed[level], self._closed[level]

    def robust_count(self) -> int:
        """Examples robust after the deepest level whose every status is known (clean pass: correct)."""
        known = [lv for lv in range(self.n_levels) if (self.status[lv] != UNKNOWN).all()]
        if not known:
            return int((self.status[0] == ROBUST).sum())
        return int((self.status[known[-1]] == ROBUST).sum())

    def broken_level(self) -> np.ndarray:
        """Per example: the first level after which it is broken (-1: robust after every level)."""
        if not self.done:
            raise ValueError("the plan is not finished")
        broken = self.status == BROKEN
        first = broken.argmax(axis=0).astype(np.int64)
        first[~broken.any(axis=0)] = -1
        return first
