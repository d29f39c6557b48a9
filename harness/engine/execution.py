"""Running an evaluation's chunk tasks: in this process, in local worker processes, or over torchrun ranks.

:class:`Tracker` feeds finished tasks back into the stage plans and hands out
what became ready, taking tasks that a state dir already holds as finished
(resume). Local workers take tasks as they are formed; torchrun ranks split each
round of ready tasks (task k to rank k mod world size) and exchange the records
at the end of the round, so every rank keeps the same plan. Either way the
records, and so the result, are those of one process.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from zoo import devices, distributed

from .attack import Job
from .stages import StagePlan, Task
from .state import StateDir
from .workers import UnpicklableModelError, WorkerError, run_workers


class Tracker:
    """The stage plans of an evaluation, the records of finished tasks and a progress bar."""

    def __init__(self, plans: list[StagePlan], state: StateDir | None, settings, progress: bool, position: int = 0):
        self.plans = {p.segment: p for p in plans}
        self.state = state
        self.settings = settings
        self.records: dict[Task, dict] = {}
        self.resumed = 0
        n = sum(p.stop - p.start for p in plans)
        eps_texts = ",".join(t for _, t in settings.eps)
        self.bar = tqdm(total=n * settings.n_levels, desc=f"AutoAttack {settings.threat_model} {eps_texts}",
                        unit="ex", disable=not progress, position=position, leave=True)

    @property
    def done(self) -> bool:
        return all(p.done for p in self.plans.values())

    def next_tasks(self) -> list[Task]:
        """The tasks that became ready and are not saved already (saved ones are finished on the way)."""
        out: list[Task] = []
        while True:
            new = [t for p in self.plans.values() for t in p.take_ready()]
            if not new:
                return out
            for task in new:
                saved = self.state.load(task) if self.state is not None else None
                if saved is None:
                    out.append(task)
                else:
                    self.resumed += 1
                    self.finish(task, {**saved, "resumed": True})

    def finish(self, task: Task, record: dict) -> None:
        """Record a finished task and move its plan on."""
        self.records[task] = record
        plan = self.plans[task.segment]
        plan.finish(task, record["robust"])
        self._show(plan, task)

    def _show(self, plan: StagePlan, task: Task) -> None:
        # examples whose status after each level is known, as a share of examples x levels
        self.bar.n = int(sum((p.status != -1).sum() for p in self.plans.values()))
        stage = "clean" if task.level == 0 else " ".join(
            [self.settings.level(task.level)[1]] + ([self.settings.eps[self.settings.level(task.level)[0]][1]]
                                                    if len(self.settings.eps) > 1 else []))
        finished, formed, closed = plan.level_progress(task.level)
        self.bar.set_postfix_str(f"{stage} chunk {finished}/{formed}{'' if closed else '+'}, "
                                 f"robust {sum(p.robust_count() for p in self.plans.values())}")
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_in_rounds(job: Job, tracker: Tracker, device: str, group: distributed.Group) -> None:
    """Run every task in this process; under torchrun each rank takes its share of every round."""
    with job.placed(device) as net:
        while not tracker.done:
            tasks = tracker.next_tasks()
            if not tasks:
                if tracker.done:
                    break
                raise RuntimeError("the evaluation plan stopped with unfinished stages and no task ready")
            group.barrier()  # every rank has taken this round's tasks (and their saved records) before any writes
            mine = []
            for k in range(group.rank, len(tasks), group.world_size):
                record = job.run(net, tasks[k], device)
                if tracker.state is not None:
                    tracker.state.save(tasks[k], record)
                mine.append((k, record))
            for part in group.all_gather_object(mine):
                for k, record in part:
                    tracker.finish(tasks[k], record)


def run_with_workers(job: Job, tracker: Tracker, workers: list[str], threads: int | None) -> None:
    """Run every task in local worker processes (see ``workers``)."""
    try:
        run_workers(job, tracker.next_tasks, lambda: tracker.done, workers, threads, tracker.state, tracker.finish)
    except WorkerError as e:
        where = (f"the finished chunks are saved in {tracker.state.path}: run the same command again to resume"
                 if tracker.state is not None else "nothing was saved: pass --out or --state-dir to make runs resumable")
        raise WorkerError(f"{e}; {where}") from None


def execute(job: Job, tracker: Tracker, where: devices.Placement, group: distributed.Group, workers: list[str],
            threads: int | None, workers_requested: bool, notes: list) -> list[str]:
    """Run the evaluation's tasks where ``workers`` say; return the devices that ran them.

    A model that cannot be sent to worker processes is evaluated in this one,
    with a note, unless workers were asked for explicitly.
    """
    if len(workers) > 1:
        try:
            run_with_workers(job, tracker, workers, threads)
            return workers
        except UnpicklableModelError as e:
            if workers_requested:
                raise
            notes.append(("harness", f"{e}; evaluated in one process instead"))
    run_in_rounds(job, tracker, where.device, group)
    return [where.device]
