"""What a run executes: the job list of a config and the `execute(run_dir, engine)` seam (docs/runs.md).

For every model and dataset, in this order:
1. `select`: each configured layer selector but brute force (race, lga, cma, ...) scores every layer on the proxy
   split;
2. `bruteforce`: each swept editing method edits every case (proxy and test; only the proxy cases with
   `selectors.bruteforce.split: proxy`) at every layer;
3. `evaluate`: each editing method edits the test cases at each selector's chosen layer (with a proxy-only
   brute force, also at brute force's proxy golden layer).
The engine (editor + evaluator + selectors, `goldenlayers.runs.engine.RunEngine`) runs one job at a time and writes rows to the run's store; it resumes inside a job with `store.done_keys`.
`execute` records each finished job in the store's jobs table, so a resumed run skips finished jobs, and a
failing job is recorded with its error and the run goes on to the next one. Cells that failed inside a finished
job count as done; `reopen_failed_cells` makes the next resume redo them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from goldenlayers.runs.config import ExperimentConfig

if TYPE_CHECKING:
    from goldenlayers.runs.rundir import RunDir

JobKind = Literal["select", "bruteforce", "evaluate"]


@dataclass(frozen=True)
class Job:
    """One unit of work. split: the cases it touches ("proxy", "test" or "all")."""

    kind: JobKind
    model: str
    dataset: str
    split: str
    method: str | None = None
    selector: str | None = None

    @property
    def key(self) -> str:
        return "/".join((self.model, self.dataset, self.kind, self.method or "-", self.selector or "-"))

    def describe(self) -> str:
        what = {"select": f"score every layer with {self.selector}",
                "bruteforce": f"edit with {self.method} at every layer",
                "evaluate": f"edit with {self.method} at the layer {self.selector} picks"}[self.kind]
        return f"{self.model} / {self.dataset}: {what} ({self.split} cases)"


def plan(config: ExperimentConfig) -> list[Job]:
    """The jobs of a config, in execution order (see the module docstring)."""
    sel = config.selectors
    pickers = sel.pickers()
    swept = (sel.bruteforce.methods or [m.name for m in config.methods]) if sel.bruteforce else []
    jobs = []
    for model in config.models:
        for ds in config.datasets:
            jobs += [Job("select", model.name, ds.name, "proxy", selector=s) for s in pickers]
            split = sel.bruteforce.split if sel.bruteforce else "all"
            jobs += [Job("bruteforce", model.name, ds.name, split, method=m, selector="bruteforce") for m in swept]
            jobs += [Job("evaluate", model.name, ds.name, "test", method=m.name, selector=s)
                     for m in config.methods for s in pickers]
            if split == "proxy":  # brute force's proxy golden layer is a pick like the selectors'
                jobs += [Job("evaluate", model.name, ds.name, "test", method=m, selector="bruteforce") for m in swept]
    return jobs


class Engine(Protocol):
    """Runs one job against a run directory, writing its rows through `run.store` (or a worker shard)."""

    def run_job(self, job: Job, run: RunDir) -> None: ...


@dataclass
class ExecuteSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished in an earlier session
    failed: dict[str, str] = field(default_factory=dict)  # job key -> error
    failure_rows: int = 0  # failure rows in the store at the end (cells not edited, records skipped): set by the CLI

    @property
    def ok(self) -> bool:
        """No job failed and the store holds no failure row."""
        return not self.failed and not self.failure_rows


def execute(run: RunDir, engine: Engine, jobs: list[Job] | None = None, retry_failed: bool = True) -> ExecuteSummary:
    """Run `jobs` (default: the whole plan) with `engine`, skipping jobs finished before; jobs that failed
    before run again unless retry_failed=False. KeyboardInterrupt stops the run (resume it later)."""
    summary, status = ExecuteSummary(), run.store.jobs()
    for job in plan(run.config) if jobs is None else jobs:
        prev = status.get(job.key, {}).get("status")
        if prev == "done" or (prev == "failed" and not retry_failed):
            summary.skipped.append(job.key)
            continue
        try:
            engine.run_job(job, run)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            run.store.mark_job(job.key, "failed", reason)
            summary.failed[job.key] = reason
            continue
        run.store.mark_job(job.key, "done")
        summary.done.append(job.key)
    return summary


def reopen_failed_cells(run: RunDir, jobs: list[Job] | None = None) -> dict[str, int]:
    """Make the next `execute` redo the cells that failed before (e.g. after fixing their cause): for every
    bruteforce/evaluate job of `jobs` (default: the plan) whose model, dataset and method have failure rows, those
    rows are deleted and the job, if finished, is marked "reopened" so that it runs again; its cells with results
    are still skipped. Returns {job key: failure rows deleted for its model/dataset/method} of the reopened jobs."""
    cell_jobs = [j for j in (plan(run.config) if jobs is None else jobs) if j.kind != "select"]
    counts = {(j.model, j.dataset, j.method): run.store.failure_count(j.model, j.dataset, j.method) for j in cell_jobs}
    status = run.store.jobs()
    reopened = {}
    for job in cell_jobs:
        n = counts[(job.model, job.dataset, job.method)]
        if n and status.get(job.key, {}).get("status") == "done":
            run.store.mark_job(job.key, "reopened", f"{n} failed cell(s) of {job.method} to redo")
            reopened[job.key] = n
    for (model, dataset, method), n in counts.items():
        if n:
            run.store.clear_failures(model, dataset, method)
    return reopened
