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

`prepare(cases)` fills the cache for many cases in cross-case batches; `state(case)` measures the current
(possibly edited) model; `compare(case, pre, post)` turns two states into {metric: (pre, post)}. `pre` and
`score` have the shapes the brute-force sweep takes as pre_fn and score_fn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.counterfact_rome import rome_pairs, rome_values
from goldenlayers.evaluation.fluency import case_seed, fluency_entropy, sample_text
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

    def _fluency(self, case: EditCase) -> float:
        s = self.settings
        text = sample_text(self.model, self.tok, case.prompt, case_seed(s.seed, case.case_id), s.fluency_max_tokens,
                           s.fluency_top_k)
        return fluency_entropy(text)

    def _generation_key(self, case: EditCase) -> tuple:
        s = self.settings
        return (self.key, case.case_id, "generation_entropy", tuple(case.generation_prompts), s.seed,
                s.fluency_max_tokens, s.fluency_top_k)

    def _generation(self, case: EditCase) -> float | None:
        """ROME's generation entropy: mean over the case's generation prompts of their samples' entropy."""
        if "generation_entropy" not in self.settings.metrics or not case.generation_prompts:
            return None
        s = self.settings
        values = [fluency_entropy(sample_text(self.model, self.tok, p, case_seed(s.seed, f"{case.case_id}:gen{j}"),
                                              s.fluency_max_tokens, s.fluency_top_k))
                  for j, p in enumerate(case.generation_prompts)]
        return sum(values) / len(values)

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
        if "fluency" in self.settings.metrics:
            for i, case in enumerate(cases):
                if i in errors:
                    continue
                if self._fluency_key(case) in self.cache.store:
                    self.cache.hits += 1
                else:
                    self.cache.misses += 1
                    self.cache.store[self._fluency_key(case)] = self._fluency(case)
        for i, case in enumerate(cases):
            if i in errors or "generation_entropy" not in self.settings.metrics or not case.generation_prompts:
                continue
            if self._generation_key(case) in self.cache.store:
                self.cache.hits += 1
            else:
                self.cache.misses += 1
                self.cache.store[self._generation_key(case)] = self._generation(case)
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
        return CaseState(scored, self._fluency(case) if "fluency" in self.settings.metrics else None,
                         self._generation(case))

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

    def score(self, case: EditCase, pre: CaseState) -> dict[str, float]:
        """Post-edit metric values of `case` on the current model (brute force's score_fn)."""
        return {k: v[1] for k, v in self.compare(case, pre, self.state(case)).items()}
