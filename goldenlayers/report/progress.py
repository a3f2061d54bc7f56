"""How far a run got, for the report of an unfinished run (docs/report.md): which planned jobs are not done, and
for each cells job how many (case, layer) cells have rows or failures out of those planned (the engine records
the planned count when the job starts; a job never started has none).

`run_progress(run)` lists a `JobState` per planned job; `summary(states)` is the line shown at the top of the
report; `partial_note(states, ...)` the note added to each table or figure that the unfinished jobs touch.
"""

from __future__ import annotations

from dataclasses import dataclass

from goldenlayers.runs.plan import plan


@dataclass(frozen=True)
class JobState:
    key: str
    kind: str
    model: str
    dataset: str
    method: str | None
    status: str  # done | failed | reopened | to do
    done: int | None = None  # cells with rows or failures (cells jobs that started)
    planned: int | None = None

    def describe(self) -> str:
        what = {"select": "layer scores", "bruteforce": f"brute force {self.method}",
                "evaluate": f"{self.method} at the selected layer"}[self.kind]
        cells = "" if self.planned is None else f", {self.done}/{self.planned} cells"
        return f"{self.model}/{self.dataset} {what} ({self.status}{cells})"


def run_progress(run) -> list[JobState]:
    """One JobState per job of the run's plan (see the module docstring)."""
    from goldenlayers.runs.engine_jobs import selector_name

    status, planned, out = run.store.jobs(), run.store.planned(), []
    for job in plan(run.config):
        st = status.get(job.key, {}).get("status", "to do")
        done = None
        if job.kind != "select" and job.key in planned:
            sel = "bruteforce" if job.kind == "bruteforce" else selector_name(run.config, job.selector)
            (done,) = run.store.query(
                "SELECT COUNT(*) FROM (SELECT case_id, layer FROM results WHERE model=? AND dataset=? AND method=? "
                "AND selector=? UNION SELECT case_id, layer FROM failures WHERE model=? AND dataset=? AND method=?)",
                (job.model, job.dataset, job.method, sel, job.model, job.dataset, job.method))[0]
        out.append(JobState(job.key, job.kind, job.model, job.dataset, job.method, st, done,
                            planned.get(job.key)))
    return out


def unfinished(states: list[JobState]) -> list[JobState]:
    return [s for s in states if s.status != "done"]


def summary(states: list[JobState]) -> str | None:
    """The report's first line for an unfinished run (None when every job is done)."""
    left = unfinished(states)
    if not left:
        return None
    return (f"Unfinished run: {len(states) - len(left)} of {len(states)} jobs done. Not done: "
            + "; ".join(s.describe() for s in left)
            + ". Tables and figures show the rows written so far; the ones marked 'Partial' lack some of them.")


def partial_note(states: list[JobState], kinds: tuple[str, ...], model: str | None = None,
                 dataset: str | None = None) -> str:
    """"Partial: ..." naming the unfinished jobs of `kinds` (and `model` / `dataset` when given), or ""."""
    left = [s for s in unfinished(states) if s.kind in kinds and model in (None, s.model)
            and dataset in (None, s.dataset)]
    return ("Partial: " + "; ".join(s.describe() for s in left) + ".") if left else ""
