"""Local worker processes: the batches of one evaluation handed out to N processes on this machine.

Each worker gets the job once (model and data travel through shared memory),
then batch indices one at a time, and sends back each batch's records after
saving them to the state dir. Because every batch is seeded by its index, the
per-example result is the same as in one process. When a worker fails or is
killed, no new batches are handed out, the batches in flight are finished
(and saved), and one error says what happened; the same command resumes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import time
import traceback
from typing import Callable

import torch

from zoo.errors import ConfigError, ScoreZooError

from .attack import BatchJob, without_examples

_POLL_S = 0.5
_GRACE_S = 5.0  # how long a finished process's last message may take to arrive


class WorkerError(ScoreZooError):
    """A worker process died, or failed without a user-facing error."""


class UnpicklableModelError(ConfigError):
    """The model cannot be sent to worker processes."""


def run_workers(job: BatchJob, pending: list[int], devices: list[str], threads: int | None,
                on_done: Callable[[int, list[dict]], None]) -> None:
    """Attack the ``pending`` batches with one process per entry of ``devices``.

    ``on_done(index, records)`` is called in this process as batches finish.
    Raises the worker's own error (``ScoreZooError``), ``WorkerError`` for a
    death, or ``UnpicklableModelError`` before anything starts.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs, tasks = [], []
    todo = list(pending)
    inflight: dict[int, int] = {}      # worker -> batch it is attacking
    failure: BaseException | None = None
    try:
        for wid, device in enumerate(devices[:len(todo)]):
            tasks.append(ctx.Queue())
            proc = ctx.Process(target=_worker_main, name=f"score-harness-worker-{wid}", daemon=True,
                               args=(wid, job, device, threads, os.getpid(), tasks[wid], results))
            try:
                proc.start()
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                raise UnpicklableModelError(f"the model cannot be sent to worker processes ({type(e).__name__}: {e}); "
                                            "evaluate it with --workers 1") from None
            procs.append(proc)
        for wid in range(len(procs)):
            _assign(wid, todo, tasks, inflight)
        gone: dict[int, float] = {}
        while inflight:
            try:
                kind, wid, index, payload = results.get(timeout=_POLL_S)
            except queue.Empty:
                for wid, index in list(inflight.items()):
                    if procs[wid].exitcode is None:
                        continue
                    if procs[wid].exitcode == 0 and time.monotonic() - gone.setdefault(wid, time.monotonic()) < _GRACE_S:
                        continue
                    del inflight[wid]
                    failure = failure or WorkerError(_death(wid, len(procs), procs[wid], index))
                continue
            del inflight[wid]
            if kind == "done":
                on_done(index, payload)
            else:
                failure = failure or payload
            if failure is None:
                _assign(wid, todo, tasks, inflight)
            else:
                tasks[wid].put(None)
        if failure is not None:
            raise failure
        for t in tasks:
            t.put(None)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _assign(wid: int, todo: list[int], tasks: list, inflight: dict[int, int]) -> None:
    if todo:
        inflight[wid] = todo.pop(0)
        tasks[wid].put(inflight[wid])
    else:
        tasks[wid].put(None)


def _death(wid: int, count: int, proc, index: int) -> str:
    code = proc.exitcode
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
    return f"worker {wid + 1} of {count} (pid {proc.pid}) {how} while attacking batch {index}"


def _worker_main(wid: int, job: BatchJob, device: str, threads: int | None, parent: int, tasks, results) -> None:
    """A worker: attack the batches it is given until told to stop (``None``) or the parent is gone."""
    _die_with_parent(parent)
    if threads:
        torch.set_num_threads(threads)
    index = None
    try:
        with job.placed(device) as net:
            while (index := _next(tasks, parent)) is not None:
                records = job.run(net, index, device)
                results.put(("done", wid, index, [without_examples(r) for r in records]))
    except BaseException as e:  # everything goes back to the parent, which decides what the user sees
        results.put(("error", wid, index, _portable(e, wid, index)))


def _next(tasks, parent: int):
    while True:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def _die_with_parent(parent: int) -> None:
    """Linux: receive SIGKILL when the parent dies (so a killed run leaves no orphans)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(AttributeError, OSError):  # a libc without prctl: the polling in _next remains
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _portable(error: BaseException, wid: int, index) -> BaseException:
    """The error as the parent should raise it: user errors as they are, anything else with its traceback."""
    if isinstance(error, ScoreZooError):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:
            return WorkerError(str(error))
    where = f"batch {index}" if index is not None else "start-up"
    return RuntimeError(f"worker {wid + 1} failed during {where}:\n{''.join(traceback.format_exception(error))}")
