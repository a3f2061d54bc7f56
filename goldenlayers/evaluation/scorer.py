"""CaseScorer: one case's metrics before and after an edit, with the unedited model's results cached.

docs/equations.md "Metrics" defines the metrics (goldenlayers.evaluation.metrics, .fluency); this module decides what to
compute for a case and keeps the pre-edit results once per (model, case): the cache key is
(model identity, case id, prompt text, answer text) for teacher-forced pairs and (model identity, case id,
"fluency", prompt, seed, length, k) for fluency samples, never the dataset alone (docs/equations.md "Pitfalls"). The
model identity is its name, its object id and a fingerprint of its weights taken when the scorer is made, so a
cache handed to a scorer of another model, or of the same model in another weight state, never answers.

The metrics of both families (goldenlayers.metric_names) share the teacher-forced pairs: ROME's CounterFact
metrics (goldenlayers.evaluation.counterfact_rome) read the answers' nll from the same Scored results, and their
generation entropy is cached like fluency, under (model identity, case id, "generation_entropy", prompts, seed,
length, k).

`prepare(cases)` fills the cache for many cases in cross-case batches (fluency samples generated together too);
`state(case)` measures the current (possibly edited) model; `states(cases, edits)` measures many cases, each under
its own edit applied to its rows only (goldenlayers.editing.row_edits: a batch of cells in a few forwards);
`compare(case, pre, post)` turns two states into {metric: (pre, post)}. `pre` and
`score` have the shapes the brute-force sweep takes as pre_fn and score_fn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.counterfact_rome import rome_pairs, rome_values
from goldenlayers.evaluation.fluency import case_seed, fluency_entropy, sample_texts
from goldenlayers.evaluation.metrics import METRICS, Scored, category_mean, check_pair, teacher_forced
from goldenlayers.metric_names import ALL_METRICS, FAMILIES, expand_metrics
from goldenlayers.text import model_max_length

Pair = tuple[str, str]


class EvalSettings(BaseModel):
    """What to measure and how (defaults: the EasyEdit metrics, EasyEdit's fluency setting of 100 tokens, top-k 5).
    metrics may name a family ("counterfact-rome"), replaced by its metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: tuple[str, ...] = METRICS
    batch_size: int = Field(16, ge=1)
    seed: int = 0
    fluency_max_tokens: int = Field(100, ge=1)
    fluency_top_k: int = Field(5, ge=1)

    @field_validator("metrics")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        v = expand_metrics(v)
        bad = [m for m in v if m not in ALL_METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {', '.join(ALL_METRICS)} or a family "
                             f"({', '.join(FAMILIES)})")
        return v


@torch.no_grad()
def model_key(model) -> str:
    """Identity of a model in its current weight state: name, object id and the float64 sum of its parameters and buffers."""
    name = getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
    tensors = [*model.parameters(), *model.buffers()]
    fingerprint = sum(float(t.detach().sum(dtype=torch.float64)) for t in tensors)
    return f"{name}@{id(model):x}:{fingerprint:.15g}"


class PreCache:
    """Pre-edit results of a run: key -> Scored | float; counts hits and misses."""

    def __init__(self) -> None:
        self.store: dict[tuple, object] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.store)


@dataclass
class CaseState:
    """A model's results on one case: teacher-forced pairs, the fluency entropy and ROME's generation entropy
    (None when not measured)."""

    scored: dict[Pair, Scored]
    fluency: float | None
    generation: float | None = None


def case_pairs(case: EditCase, metrics: tuple[str, ...]) -> list[Pair]:
    """The distinct (prompt, answer) pairs the chosen metrics score for `case`."""
    pairs: list[Pair] = []
    if "rewrite" in metrics:
        pairs.append((case.prompt, case.target_new))
    if "rephrase" in metrics:
        pairs += [(r, case.target_new) for r in case.rephrase]
    if "locality" in metrics:
        pairs += [(p.prompt, p.answer) for p in case.locality]
    if "portability" in metrics:
        pairs += [(p.prompt, p.answer) for p in case.portability]
    pairs += rome_pairs(case, metrics)
    return list(dict.fromkeys(pairs))


class CaseScorer:
    def __init__(self, model, tok, settings: EvalSettings | None = None, cache: PreCache | None = None):
        self.model, self.tok = model, tok
        self.settings = settings or EvalSettings()
        self.cache = cache if cache is not None else PreCache()
        self.key = model_key(model)  # the UNEDITED model's identity: pre-edit results are stored under it
        self.max_len = model_max_length(model)

    def _fluency_key(self, case: EditCase) -> tuple:
        s = self.settings
        return (self.key, case.case_id, "fluency", case.prompt, s.seed, s.fluency_max_tokens, s.fluency_top_k)

    def _generation_key(self, case: EditCase) -> tuple:
        s = self.settings
        return (self.key, case.case_id, "generation_entropy", tuple(case.generation_prompts), s.seed,
                s.fluency_max_tokens, s.fluency_top_k)

    def _row_context(self, owners: list[int] | None, edits):
        """context(start, stop) for rows owned by owners[start:stop] (edit indices), or None: unedited rows."""
        if owners is None:
            return None
        from goldenlayers.editing.row_edits import (
            row_edits,  # lazily: scoring unedited models needs no editor
        )
        from goldenlayers.models.adapters import get_adapter

        adapter = get_adapter(self.model)
        return lambda start, stop: row_edits(self.model, adapter, edits, owners[start:stop])

    def _entropies(self, samples: list[tuple[str, int]], owners: list[int] | None = None, edits=()) -> list[float]:
        """Fluency entropy of each (prompt, seed) sample, generated `batch_size` rows at a time; sample i with edit
        edits[owners[i]] on its rows only when owners is given."""
        if not samples:
            return []
        s = self.settings
        texts = sample_texts(self.model, self.tok, [p for p, _ in samples], [seed for _, seed in samples],
                             s.fluency_max_tokens, s.fluency_top_k, batch_size=s.batch_size,
                             context=self._row_context(owners, edits))
        return [fluency_entropy(t) for t in texts]

    def _fluency_samples(self, cases: list[EditCase]) -> list[tuple[str, int]]:
        return [(c.prompt, case_seed(self.settings.seed, c.case_id)) for c in cases]

    def _generation_samples(self, case: EditCase) -> list[tuple[str, int]]:
        """ROME's generation entropy samples: one per generation prompt of the case (none unless measured)."""
        if "generation_entropy" not in self.settings.metrics:
            return []
        return [(p, case_seed(self.settings.seed, f"{case.case_id}:gen{j}"))
                for j, p in enumerate(case.generation_prompts)]

    def _generations(self, cases: list[EditCase], owners: list[int] | None = None, edits=()) -> list[float | None]:
        """ROME's generation entropy of each case: the mean of its samples' entropies (None without samples)."""
        jobs = [(i, sample) for i, c in enumerate(cases) for sample in self._generation_samples(c)]
        values = self._entropies([sample for _, sample in jobs], None if owners is None else
                                 [owners[i] for i, _ in jobs], edits)
        per: dict[int, list[float]] = {}
        for (i, _), v in zip(jobs, values):
            per.setdefault(i, []).append(v)
        return [sum(per[i]) / len(per[i]) if i in per else None for i in range(len(cases))]

    def prepare(self, cases: list[EditCase]) -> dict[int, Exception]:
        """Cache the unedited model's results for `cases` (pairs batched across cases). Returns {index: error}."""
        errors: dict[int, Exception] = {}
        todo: dict[tuple, Pair] = {}
        for i, case in enumerate(cases):
            try:
                for p, a in case_pairs(case, self.settings.metrics):
                    key = (self.key, case.case_id, p, a)
                    if key in self.cache.store:
                        self.cache.hits += 1
                    elif key not in todo:
                        check_pair(self.tok, p, a, self.max_len)
                        todo[key] = (p, a)
            except Exception as e:
                errors[i] = e
        self.cache.misses += len(todo)
        keys = list(todo)
        for key, scored in zip(keys, teacher_forced(self.model, self.tok, [todo[k] for k in keys],
                                                    self.settings.batch_size)):
            self.cache.store[key] = scored
        fresh: dict[tuple, EditCase] = {}  # samples of the unedited model, generated together
        for kind, key_of in (("fluency", self._fluency_key), ("generation_entropy", self._generation_key)):
            if kind not in self.settings.metrics:
                continue
            wanted = [c for i, c in enumerate(cases) if i not in errors and (kind == "fluency" or c.generation_prompts)]
            todo_cases = []
            for case in wanted:
                key = key_of(case)
                if key in self.cache.store or key in fresh:
                    self.cache.hits += 1
                else:
                    self.cache.misses += 1
                    fresh[key] = case
                    todo_cases.append(case)
            values = (self._entropies(self._fluency_samples(todo_cases)) if kind == "fluency"
                      else self._generations(todo_cases))
            for case, v in zip(todo_cases, values):
                self.cache.store[key_of(case)] = v
        return errors

    def pre(self, case: EditCase) -> CaseState:
        """The unedited model's state on `case`, from the cache (computed now if missing)."""
        errors = self.prepare([case])
        if errors:
            raise errors[0]
        pairs = case_pairs(case, self.settings.metrics)
        scored = {pa: self.cache.store[(self.key, case.case_id, *pa)] for pa in pairs}
        flu = self.cache.store[self._fluency_key(case)] if "fluency" in self.settings.metrics else None
        return CaseState(scored, flu, self.cache.store.get(self._generation_key(case)))

    def state(self, case: EditCase) -> CaseState:
        """The current (edited) model's state on `case`: nothing cached."""
        pairs = case_pairs(case, self.settings.metrics)
        scored = dict(zip(pairs, teacher_forced(self.model, self.tok, pairs, self.settings.batch_size)))
        flu = self._entropies(self._fluency_samples([case]))[0] if "fluency" in self.settings.metrics else None
        return CaseState(scored, flu, self._generations([case])[0])

    def states(self, cases: list[EditCase], edits: list) -> list[CaseState | Exception]:
        """The state of each case on the model edited by its own edit, edits[i] = {(layer, site): dW} (what a
        WeightDelta records), all in a few batched forwards and generations: each row runs with its case's edit
        only (goldenlayers.editing.row_edits), the weights are never written. A case whose pairs cannot be
        encoded gets its Exception; if a batch fails as a whole, the cases are measured one by one so that the
        error stays with its case."""
        if len(cases) != len(edits):
            raise ValueError(f"{len(cases)} cases but {len(edits)} edits")
        out: list[CaseState | Exception | None] = [None] * len(cases)
        pairs: list[Pair] = []
        owners: list[int] = []
        for i, case in enumerate(cases):
            try:
                mine = case_pairs(case, self.settings.metrics)
                for p, a in mine:
                    check_pair(self.tok, p, a, self.max_len)
            except Exception as e:
                out[i] = e
                continue
            pairs += mine
            owners += [i] * len(mine)
        ok = [i for i in range(len(cases)) if out[i] is None]
        try:
            scored = teacher_forced(self.model, self.tok, pairs, self.settings.batch_size,
                                    context=self._row_context(owners, edits))
            flu = (self._entropies(self._fluency_samples([cases[i] for i in ok]), ok, edits)
                   if "fluency" in self.settings.metrics else [None] * len(ok))
            gen = self._generations([cases[i] for i in ok], ok, edits)
        except Exception as e:
            if len(ok) <= 1:
                for i in ok:
                    out[i] = e
                return out
            for i in ok:
                out[i] = self.states([cases[i]], [edits[i]])[0]
            return out
        by_case: dict[int, dict[Pair, Scored]] = {}
        for pair, owner, sc in zip(pairs, owners, scored):
            by_case.setdefault(owner, {})[pair] = sc
        for j, i in enumerate(ok):
            out[i] = CaseState(by_case.get(i, {}), flu[j], gen[j])
        return out

    def compare(self, case: EditCase, pre: CaseState, post: CaseState) -> dict[str, tuple[float | None, float]]:
        """{metric: (pre value, post value)} for the metrics `case` supports (locality has no pre value)."""
        m, out = self.settings.metrics, {}
        tf = case.target_new
        if "rewrite" in m:
            out["rewrite"] = (pre.scored[(case.prompt, tf)].accuracy, post.scored[(case.prompt, tf)].accuracy)
        if "rephrase" in m and case.rephrase:
            vals = [(pre.scored[(r, tf)].accuracy, post.scored[(r, tf)].accuracy) for r in case.rephrase]
            out["rephrase"] = (sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals))
        if "portability" in m and case.portability:
            out["portability"] = tuple(
                category_mean((p.category, state.scored[(p.prompt, p.answer)].accuracy) for p in case.portability)
                for state in (pre, post))
        if "locality" in m and case.locality:
            out["locality"] = (None, category_mean(
                (p.category, pre.scored[(p.prompt, p.answer)].agreement(post.scored[(p.prompt, p.answer)]))
                for p in case.locality))
        if "fluency" in m:
            out["fluency"] = (pre.fluency, post.fluency)
        before, after = rome_values(case, pre.scored, m), rome_values(case, post.scored, m)
        out.update({k: (before[k], after[k]) for k in after})
        if "generation_entropy" in m and post.generation is not None:
            out["generation_entropy"] = (pre.generation, post.generation)
        return out

    def score_batch(self, cases: list[EditCase], pres: list[CaseState], edits: list) -> list[dict | Exception]:
        """{metric: (pre, post)} of each case under its own edit (`states`), or the case's Exception: the cell
        loop's score_batch_fn."""
        out: list[dict | Exception] = []
        for case, pre, post in zip(cases, pres, self.states(cases, edits), strict=True):
            try:
                out.append(post if isinstance(post, Exception) else self.compare(case, pre, post))
            except Exception as e:
                out.append(e)
        return out

    def score(self, case: EditCase, pre: CaseState) -> dict[str, float]:
        """Post-edit metric values of `case` on the current model (brute force's score_fn)."""
        return {k: v[1] for k, v in self.compare(case, pre, self.state(case)).items()}
