"""Local worker processes: the chunk tasks of one evaluation handed out to N processes on this machine.

Each worker gets the job once (model and data travel through shared memory),
makes its device current, then takes tasks one at a time and sends back each
record, after saving it to the state dir, through a pipe of its own (so a
worker killed in the middle of a message breaks only its own channel, which
then reads as that worker's death). Tasks are handed out the moment they
are formed (see ``stages``), so workers do not wait for each other at attack
boundaries; since every chunk is seeded alike and formed alike, the result is
the one of a single process. When a worker fails or is killed, no new tasks are
handed out, the tasks in flight are finished (and saved), and one error says
what happened; the same command resumes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import traceback
from multiprocessing.connection import wait
from typing import Callable

import torch

from zoo import devices
from zoo.errors import ConfigError, ScoreZooError

from .attack import Job
from .stages import Task

_EXIT_WAIT_S = 5.0  # how long a worker whose channel closed may take to report its exit code


class WorkerError(ScoreZooError):
    """A worker process died, or failed without a user-facing error."""


class UnpicklableModelError(ConfigError):
    """The model cannot be sent to worker processes."""


def run_workers(job: Job, next_tasks: Callable[[], list[Task]], finished: Callable[[], bool], workers: list[str],
                threads: int | None, state, on_done: Callable[[Task, dict], None]) -> None:
    """Run tasks with one process per entry of ``workers`` (their devices) until ``finished()``.

    Each worker runs on ``threads`` CPU threads, and a task that is the only one
    in flight on every worker's threads (``task_threads``).

    ``next_tasks()`` returns the tasks that became ready; ``on_done(task, record)``
    is called in this process as tasks finish. Raises the worker's own error
    (``ScoreZooError``), ``WorkerError`` for a death, or ``UnpicklableModelError``
    before anything starts.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs, inboxes, channels = [], [], []
    todo: list[Task] = []
    inflight: dict[int, Task] = {}      # worker -> task it is running
    idle: list[int] = []
    failure: BaseException | None = None
    try:
        for wid, device in enumerate(workers):
            inboxes.append(ctx.Queue())
            channel, sender = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, name=f"score-harness-worker-{wid}", daemon=True,
                               args=(wid, job, device, state, os.getpid(), inboxes[wid], sender))
            try:
                proc.start()
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                raise UnpicklableModelError(f"the model cannot be sent to worker processes ({type(e).__name__}: {e}); "
                                            "evaluate it with --workers 1") from None
            finally:
                sender.close()  # the worker holds the only sending end: its death closes the channel
            procs.append(proc)
            channels.append(channel)
            idle.append(wid)
        todo += next_tasks()  # only once every worker started: a model that cannot travel leaves the plan untouched
        while True:
            share = task_threads(threads, len(todo), len(idle), len(procs))
            while idle and todo and failure is None:
                wid = idle.pop(0)
                inflight[wid] = todo.pop(0)
                inboxes[wid].put((inflight[wid], share))
            if not inflight:
                break
            for channel in wait([channels[wid] for wid in inflight]):
                wid = channels.index(channel)
                task = inflight.pop(wid)
                try:
                    kind, payload = channel.recv()
                except (EOFError, OSError, pickle.UnpicklingError):  # gone, maybe in the middle of a message
                    procs[wid].join(_EXIT_WAIT_S)
                    failure = failure or WorkerError(_death(wid, len(procs), procs[wid], task))
                    continue
                idle.append(wid)
                if kind == "done":
                    on_done(task, payload)
                    todo += next_tasks()
                else:
                    failure = failure or payload
        if failure is not None:
            raise failure
        if not finished():
            raise RuntimeError("the evaluation plan stopped with unfinished stages and no task ready")
        for inbox in inboxes:
            inbox.put(None)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def task_threads(threads: int | None, ready: int, idle: int, workers: int) -> int | None:
    """CPU threads for the tasks about to be handed out: ``threads``, or every worker's threads for a task
    that is the only one in flight (a pooled stage's single chunk), so that no core waits while it runs.

    The two counts are those of a worker and of one process running the whole
    evaluation, which give the same per-example results (tested).
    """
    if threads and ready == 1 and idle == workers:
        return threads * workers
    return threads


def _death(wid: int, count: int, proc, task: Task) -> str:
    code = proc.exitcode
    how = ("closed its channel" if code is None else
           f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
    return f"worker {wid + 1} of {count} (pid {proc.pid}) {how} while running {task.name}"


def _worker_main(wid: int, job: Job, device: str, state, parent: int, inbox, channel) -> None:
    """A worker: run the tasks it is given until told to stop (``None``) or the parent is gone."""
    _die_with_parent(parent)
    task = None
    try:
        devices.use_device(device)
        with job.placed(device) as net:
            while (message := _next(inbox, parent)) is not None:
                task, threads = message
                if threads:
                    torch.set_num_threads(threads)
                record = job.run(net, task, device)
                if state is not None:
                    state.save(task, record)
                channel.send(("done", record))
    except BaseException as e:  # everything goes back to the parent, which decides what the user sees
        channel.send(("error", _portable(e, wid, task)))


def _next(inbox, parent: int):
    while True:
        try:
            return inbox.get(timeout=1.0)
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


def _portable(error: BaseException, wid: int, task: Task | None) -> BaseException:
    """The error as the parent should raise it: user errors as they are, anything else with its traceback."""
    if isinstance(error, ScoreZooError):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:
            return WorkerError(str(error))
    where = task.name if task is not None else "start-up"
    return RuntimeError(f"worker {wid + 1} failed during {where}:\n{''.join(traceback.format_exception(error))}")
