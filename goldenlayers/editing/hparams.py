"""Editing settings (docs/equations.md "Typical settings") and the presets that hold the reference values.

`EditHParams` holds the settings every method shares; each method has its own subclass with its own fields
(`EditMethod.settings`; extra keys are errors). Presets are keyed by a model family and a method family ("rome"
for ROME/R-ROME, "memit" for MEMIT and AlphaEdit, "emmet"):

- gpt2-xl: the ROME/MEMIT papers' and EasyEdit's GPT-2 XL values (layer 17, 20 steps, lr 0.5, weight decay 0.5,
  clamp 4, KL 0.0625; MEMIT layers 13-17, clamp 0.75, w 20000; EMMET clamp 0.75, w 1000 as the official code).
  Every MEMIT/EMMET preset but default-small uses MEMIT's template set and grouped key averaging, as the MEMIT
  and EMMET reference code do; ROME/R-ROME presets ROME's 21 templates averaged per template (docs/parity.md).
- llama-2-7b: EasyEdit's values (layer 5, a copied convention; 25 steps, weight decay 1e-3, clamp 4; MEMIT
  layers 4-8, w 15000; EMMET w 1 as the official code, EasyEdit uses 1e5).
- gemma-3-12b: no reference implementation ships Gemma settings: LLaMA-2's optimiser values, no default layer
  (choose one with a selector).
- default-gpt2 / default-llama (the embedded synthetic-world models): only the bare "{}" template, at most
  500 Adam steps at lr 0.3, early stop at loss 0.5, clamp 50, a KL factor of 1.0 in the direction
  KL(original || current) and weight decay 1e-3 (measured on world edits, see docs/editing.md); C = I unless key statistics are passed (C from the
  world's held-out corpus, `stats=`, improves default-llama's locality).
- llama-small / gemma3-small (SmolLM2-135M, Gemma-3-270M and other LLaMA / Gemma-3 models of that size, chosen by
  architecture and size): measured on 120 real facts per model (docs/editing.md "Presets for small real models"):
  lr 0.1 (Gemma 0.05), weight decay 1e-3, up to 100 steps, early stop 0.2, KL(current || original) at factor 1,
  the bare prompt only, C = I; the "-stats" variants use key statistics C (e.g. from "wikipedia-vital").
- generic: the GPT-2 XL optimiser values with no default layer, for any other model.

Presets are chosen explicitly (`--preset`, a config's `preset:`), else by rule (`preset_choice`, which also says
why): the paper's models by their exact shape, small real models by architecture and size, the embedded default
models by their exact name (logged as a choice by name); 'generic' otherwise. `resolve_settings(model, method,
preset, overrides)` is the one function that turns these into the typed settings of a method (`RomeSettings`,
`MemitSettings`, `EmmetSettings`, `AlphaEditSettings`: the shared `EditHParams` fields plus the method's own);
`StatsSettings` says where the key statistics C come from when `mom2_adjustment` (the one switch for C) is on.
Model facts are not settings: the loss is always read at the model's own output (ROME's `v_loss_layer` is the
last layer in every reference preset), layer indices are validated against the adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MethodFamily = Literal["rome", "memit", "emmet"]


class EditHParams(BaseModel):
    """Settings of the v* optimisation and of the closed-form solves.

    layers: default layer(s) to edit when `edit()` gets none (ROME/R-ROME take exactly one).
    context_templates: (length in tokens, count) groups of model-generated prefixes "<text>. {}"; the bare
        prompt "{}" is always the first template; [] gives "{}" only. ROME/EasyEdit: [(5, 10), (10, 10)].
    preserve_prompts, preserve_factor: an extension (not in ROME): extra KL rows "<prompt with the subject>",
        compared at their LAST token (what the prompt asks about the subject), added to the loss as
        preserve_factor * their mean KL; [] (the default) leaves the reference loss unchanged.
    kl_direction: "current||original" (default) is what the ROME/MEMIT/EasyEdit code computes,
        `kl_div(init_log_probs, current_log_probs, log_target=True)`; "original||current" is the textbook
        direction (docs/equations.md "KL term direction"), kept by the default-small presets whose figures were measured with it.
    key_averaging: how k* averages a case's keys over the context templates. "per_template" (ROME's compute_u):
        every template weighs the same. "grouped" (the MEMIT/EMMET reference code's compute_ks): the bare prompt
        "{}" is a group of its own, each (length, count) group of `context_templates` another; k* is the mean of
        the group means (with MEMIT's one group the bare prompt weighs one half). v*'s loss averages every
        template equally either way (as both references do).
    mom2_adjustment: the one switch for C: True requires key statistics C (`stats=`, from the text source of
        `StatsSettings`); False edits with C = I and collects nothing.
    mom2_shrinkage: a, to use C + a * mean(diag C) * I instead of C (an extension, 0 = off as in the reference
        code): with C from a corpus, C^-1 k* can be large on directions other prompt positions' keys also use,
        so an edit spills onto them; a = 1 keeps most of C's locality gain without that (docs/editing.md).
    (suffix_replay and cuda_graphs, method settings of earlier versions, are execution options now:
    goldenlayers.editing.accel.options; given here they are refused with a note saying so.)
    """

    model_config = ConfigDict(extra="forbid")

    layers: list[int] | None = None
    v_num_grad_steps: int = Field(20, ge=1)
    v_lr: float = Field(0.5, gt=0)
    v_weight_decay: float = Field(0.5, ge=0)
    clamp_norm_factor: float = Field(4.0, gt=0)
    kl_factor: float = Field(0.0625, ge=0)
    kl_direction: Literal["original||current", "current||original"] = "current||original"
    kl_prompt: str = "{} is a"
    preserve_prompts: list[str] = Field(default_factory=list)
    preserve_factor: float = Field(1.0, ge=0)
    early_stop_loss: float = Field(0.05, ge=0)
    plateau_patience: int | None = Field(None, ge=1)  # stop a case whose loss stalls this many steps (None: off)
    plateau_min_improvement: float = Field(0.01, ge=0, lt=1)  # relative improvement that resets the patience
    context_templates: list[tuple[int, int]] = Field(default_factory=lambda: [(5, 10), (10, 10)])
    key_averaging: Literal["per_template", "grouped"] = "per_template"
    template_seed: int = 0
    template_top_k: int = Field(5, ge=1)
    mom2_adjustment: bool = False
    mom2_shrinkage: float = Field(0.0, ge=0)
    @model_validator(mode="before")
    @classmethod
    def _no_execution_options(cls, data):
        from goldenlayers.editing.accel.options import MOVED_SETTINGS, moved_setting_error

        for key in MOVED_SETTINGS:
            if isinstance(data, dict) and key in data:
                raise ValueError(moved_setting_error(key))
        return data

    @field_validator("kl_prompt")
    @classmethod
    def _kl_prompt_has_slot(cls, v: str) -> str:
        if v.count("{}") != 1:
            raise ValueError(f"kl_prompt must contain '{{}}' exactly once (the subject's place), got {v!r}")
        return v

    @field_validator("preserve_prompts")
    @classmethod
    def _preserve_prompts_have_slot(cls, v: list[str]) -> list[str]:
        for p in v:
            if p.count("{}") != 1:
                raise ValueError(f"preserve_prompts must each contain '{{}}' exactly once, got {p!r}")
        return v

    @field_validator("context_templates")
    @classmethod
    def _positive_groups(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for length, count in v:
            if length < 1 or count < 0:
                raise ValueError(f"context template group (length={length}, count={count}) needs length >= 1, count >= 0")
        return v

    @field_validator("layers")
    @classmethod
    def _ascending(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or sorted(set(v)) != list(v)):
            raise ValueError(f"layers must be a non-empty ascending list without repeats, got {v}")
        return v


class RomeSettings(EditHParams):
    """ROME and R-ROME: the shared settings only (one case, one layer, dW from C^-1 k*)."""


class MemitSettings(EditHParams):
    """MEMIT: mom2_update_weight is w in (w C + K K^T)."""

    mom2_update_weight: float = Field(15000.0, gt=0)


class EmmetSettings(MemitSettings):
    """EMMET: C0 = w C (w = mom2_update_weight); emmet_lambda the ridge lambda_e; emmet_ridge "batch>1" adds it
    only for batches of more than one case (the official EMMET code), "always" for every batch (EasyEdit)."""

    emmet_lambda: float = Field(0.1, ge=0)
    emmet_ridge: Literal["batch>1", "always"] = "batch>1"


class StatsSettings(BaseModel):
    """Where the key statistics C = E[k k^T] come from when the editing settings use them (mom2_adjustment), and
    how much text they are collected over: the `stats` section of an experiment config and what `--stats` /
    `--stats-tokens` set. source: a text source (goldenlayers.editing.sources: "world", "world:PATH", a folder
    of .txt files, "hf:NAME[:CONFIG][:SPLIT]", "wikipedia-vital"); None: the held-out corpus of the synthetic
    world the model was trained on (the embedded default models, `train-world` outputs), an error for other
    models. tokens: the token budget; max_length: tokens per text; dtype: accumulation dtype. All four go into
    the statistics cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(None, min_length=1)
    tokens: int = Field(100_000, ge=1)
    max_length: int = Field(256, ge=2)
    dtype: Literal["float32", "float64"] = "float64"


_GPT2XL = dict(v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, kl_factor=0.0625, clamp_norm_factor=4.0)
_LLAMA = dict(v_num_grad_steps=25, v_lr=0.5, v_weight_decay=1e-3, kl_factor=0.0625, clamp_norm_factor=4.0)
# Embedded default models (d_model 128), measured on 50 world edits per model (docs/editing.md): v* must move
# far past v_init (||delta|| 5-10x ||v_init||; the reference 25 steps at lr 0.5 with clamp 4 gives 0 rewrite
# from layer 4 on), but every step past "target predicted" costs locality of the subject's other facts (the
# edited key is the subject's, shared by all its prompts). So: a small lr (0.3) with a loose early stop (0.5,
# the target already wins the argmax) and room to go far (500 steps, clamp 50); the "{} is a" KL term is kept
# (it is read at the subject token, so it only preserves the token after the name, not the subject's facts).
# A case whose loss has not improved by 1% in 100 steps stops (plateau_patience): on default-llama this leaves
# the 50-edit figures at layers 1 and 2 unchanged and makes a sweep's hopeless layers (5: loss stalls near 8)
# 2.2x cheaper (docs/editing.md).
# The KL direction is pinned to the one these figures were measured with (at KL factor 1.0 the two directions
# give different edits; the reference code's direction, the default, is not measured on these models yet).
_SMALL = dict(v_num_grad_steps=500, v_lr=0.3, v_weight_decay=1e-3, kl_factor=1.0, clamp_norm_factor=50.0,
              early_stop_loss=0.5, plateau_patience=100, context_templates=[], kl_direction="original||current")

# Quality settings for the embedded default models (docs/editing.md, benchmarks/bench_quality.py): C from the
# world's held-out corpus shrunk towards the identity (C + mean(diag C) I: corpus C alone made edits spill onto
# the prompt's other positions, C = I lets neighbours that share the subject's last name change), and patience
# for cases whose loss stalls for a few hundred steps before it falls. default-gpt2 also keeps eight neutral
# "<subject> ..." prompts' predictions (they cost default-llama rewrite, so it goes without). Slower than
# default-small; they need key statistics (stats=).
_QUALITY = dict(_SMALL, v_num_grad_steps=1000, plateau_patience=500, mom2_adjustment=True, mom2_shrinkage=1.0)
NEUTRAL_PROMPTS = ["{} is", "{} was", "{} has", "{},", "{} and", "The name {} is", "About {}:", "{} is known for"]

# Small real models, chosen by measurement on 120 real facts each model knows (docs/editing.md "Presets for small real
# models", benchmarks/bench_real_quality.py). The reference lr 0.5 is calibrated to GPT-2 XL's down-proj outputs; on
# SmolLM2-135M it overshoots (locality 0.79-0.90 at layers 2-6 where lr 0.1 gives 0.90-0.95). Weight decay 1e-3: the
# reference 0.5 * ||delta|| / ||v_init||^2 term grows as 1 / ||v_init||, and small models' down-proj outputs are
# small (Gemma-3-270M: ||v_init|| ~ 2-3 from layer 4 on, where the term alone is ~0.8 of a 0.99 loss that can then
# never reach the early stop). Up to 100 steps with a loose early stop (0.2: the target already wins), the bare
# prompt only (context templates [(5, 5)] cost SmolLM2 rewrite: 0.77-0.81), KL(current || original) at factor 1.
_REAL = dict(v_num_grad_steps=100, v_lr=0.1, v_weight_decay=1e-3, kl_factor=1.0, kl_direction="current||original",
             clamp_norm_factor=4.0, early_stop_loss=0.2, context_templates=[])
_LLAMA_SMALL = dict(_REAL)
# Gemma-3-270M meets the target only with C (gemma3-small-stats: locality 0.926 at layer 1, 0.903 at layer 2), with
# ROME/R-ROME writing v* moved along its ray, which Gemma's normalised MLP output allows (editing.rome.site_value).
_GEMMA3_SMALL = dict(_REAL, v_lr=0.05)
# MEMIT's and EMMET's reference code (kmeng01/memit, unified-model-editing, EasyEdit's MEMIT/EMMET): 5 generated
# prefixes of 10 tokens plus "{}", and k* as the mean of the bare-prompt group and the prefixed group.
_MEMIT_KEYS = dict(context_templates=[(10, 5)], key_averaging="grouped")

PRESETS: dict[str, dict[MethodFamily, dict]] = {
    "gpt2-xl": {
        "rome": dict(_GPT2XL, layers=[17]),
        "memit": dict(_GPT2XL, **_MEMIT_KEYS, layers=[13, 14, 15, 16, 17], clamp_norm_factor=0.75, mom2_adjustment=True,
                      mom2_update_weight=20000.0),
        "emmet": dict(_GPT2XL, **_MEMIT_KEYS, layers=[13, 14, 15, 16, 17], clamp_norm_factor=0.75, mom2_adjustment=True,
                      mom2_update_weight=1000.0),
    },
    "llama-2-7b": {
        "rome": dict(_LLAMA, layers=[5]),
        "memit": dict(_LLAMA, **_MEMIT_KEYS, layers=[4, 5, 6, 7, 8], mom2_adjustment=True, mom2_update_weight=15000.0),
        "emmet": dict(_LLAMA, **_MEMIT_KEYS, layers=[4, 5, 6, 7, 8], mom2_adjustment=True, mom2_update_weight=1.0),
    },
    "gemma-3-12b": {
        "rome": dict(_LLAMA),
        "memit": dict(_LLAMA, **_MEMIT_KEYS, mom2_adjustment=True, mom2_update_weight=15000.0),
        "emmet": dict(_LLAMA, **_MEMIT_KEYS, mom2_adjustment=True, mom2_update_weight=1.0),
    },
    "default-small": {
        "rome": dict(_SMALL),
        "memit": dict(_SMALL, mom2_update_weight=1.0),
        "emmet": dict(_SMALL, mom2_update_weight=1.0),
    },
    "default-gpt2-quality": {"rome": dict(_QUALITY, preserve_prompts=NEUTRAL_PROMPTS)},
    "default-llama-quality": {"rome": dict(_QUALITY)},
    "llama-small": {
        "rome": dict(_LLAMA_SMALL),
        "memit": dict(_LLAMA_SMALL, mom2_update_weight=15000.0),
        "emmet": dict(_LLAMA_SMALL, mom2_update_weight=1.0),
    },
    # the same with key statistics C (e.g. from "wikipedia-vital"): SmolLM2's locality 0.93-0.97 at layers 2-11
    "llama-small-stats": {"rome": dict(_LLAMA_SMALL, mom2_adjustment=True)},
    "gemma3-small": {
        "rome": dict(_GEMMA3_SMALL),
        "memit": dict(_GEMMA3_SMALL, mom2_update_weight=15000.0),
        "emmet": dict(_GEMMA3_SMALL, mom2_update_weight=1.0),
    },
    "gemma3-small-stats": {"rome": dict(_GEMMA3_SMALL, mom2_adjustment=True)},
    "generic": {
        "rome": dict(_GPT2XL),
        "memit": dict(_GPT2XL, **_MEMIT_KEYS, clamp_norm_factor=0.75, mom2_update_weight=20000.0),
        "emmet": dict(_GPT2XL, **_MEMIT_KEYS, clamp_norm_factor=0.75, mom2_update_weight=1000.0),
    },
}

# Presets of the paper's models by their exact shape (model_type, d_model, layers, d_ff), and of small real models
# by architecture and size (model_type, d_model range, largest number of layers). The smallest real models of
# these families (SmolLM2-135M: d_model 576, Gemma-3-270M: 640) are well above the test models' sizes (d_model 32).
_SHAPE_TO_PRESET = (
    ("gpt2-xl", ("gpt2",), 1600, 48, 6400),
    ("llama-2-7b", ("llama",), 4096, 32, 11008),
    ("gemma-3-12b", ("gemma3_text", "gemma3"), 3840, 48, 15360),
)
_ARCH_TO_PRESET = (
    ("llama-small", ("llama",), (256, 2048), 40),
    ("gemma3-small", ("gemma3_text", "gemma3"), (256, 1152), 32),
)
# Names that choose a preset without a model config to read (e.g. `run --dry-run` before any model loads), and
# the embedded default models, whose shape is no rule's. Matched exactly (the name as given, or the last part
# of a path), never as a substring; a choice made by name is logged with that reason.
KNOWN_NAMES = {
    "default-gpt2": "default-small", "default-llama": "default-small",
    "gpt2-xl": "gpt2-xl", "openai-community/gpt2-xl": "gpt2-xl",
    "llama-2-7b": "llama-2-7b", "llama-2-7b-hf": "llama-2-7b", "meta-llama/llama-2-7b-hf": "llama-2-7b",
    "gemma-3-12b": "gemma-3-12b", "gemma-3-12b-it": "gemma-3-12b", "gemma-3-12b-pt": "gemma-3-12b",
    "google/gemma-3-12b-it": "gemma-3-12b", "google/gemma-3-12b-pt": "gemma-3-12b",
}

log = logging.getLogger("goldenlayers.editing")


@dataclass(frozen=True)
class PresetChoice:
    """The preset a model gets and why (printed by the commands, logged by `resolve_settings`)."""

    preset: str
    reason: str


def _text_config(model):
    cfg = getattr(model, "config", None)
    sub = getattr(cfg, "get_text_config", None)
    return sub() if callable(sub) else cfg


def _known_name(name: str) -> str | None:
    low = name.lower().rstrip("/")
    for cand in (low, low.rsplit("/", 1)[-1]):
        if cand in KNOWN_NAMES:
            return cand
    return None


def preset_choice(model=None, name: str | None = None) -> PresetChoice:
    """The preset for a model, in this order: its exact shape (`_SHAPE_TO_PRESET`, the paper's models), its
    architecture and size (`_ARCH_TO_PRESET`), a known name (`KNOWN_NAMES`: `name` as loaded or the config's
    name_or_path, exactly), else 'generic'. The reason says which rule chose it."""
    cfg = getattr(model, "config", None)
    text = _text_config(model)
    model_type = getattr(cfg, "model_type", None)
    d_model, n_layers = getattr(text, "hidden_size", None), getattr(text, "num_hidden_layers", None)
    d_ff = getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or (
        4 * d_model if model_type == "gpt2" and d_model else None)
    shape = f"model_type {model_type}, d_model {d_model}, {n_layers} layers, d_ff {d_ff}"
    if model_type is not None and d_model is not None and n_layers is not None:
        for preset, types, d, layers, ff in _SHAPE_TO_PRESET:
            if model_type in types and (d_model, n_layers, d_ff) == (d, layers, ff):
                return PresetChoice(preset, f"its shape ({shape}) is {preset}'s")
        for preset, types, (min_d, max_d), max_layers in _ARCH_TO_PRESET:
            if model_type in types and min_d <= d_model <= max_d and n_layers <= max_layers:
                return PresetChoice(preset, f"model_type {model_type}, d_model {d_model} in [{min_d}, {max_d}], "
                                            f"{n_layers} layers <= {max_layers}")
    for cand in (name or "", str(getattr(cfg, "_name_or_path", "") or "")):
        known = _known_name(cand) if cand else None
        if known is not None:
            return PresetChoice(KNOWN_NAMES[known], f"by name: {cand!r} is listed for it")
    if model_type is not None:
        return PresetChoice("generic", f"no preset for {shape}")
    return PresetChoice("generic", "no known name and no model config to choose by")


def preset_for_model(model=None, name: str | None = None) -> str:
    """Preset name for a model (`preset_choice`)."""
    return preset_choice(model, name).preset


def resolve_settings(model, method: str, preset: str | None = None, overrides: dict | EditHParams | None = None,
                     *, name: str | None = None) -> EditHParams:
    """The typed settings an edit with `method` runs with: the settings class of the method (`EditMethod.settings`)
    filled from `preset` (None: the model's own, `preset_choice`, logged with its reason) and then `overrides`
    (a dict; unknown keys and bad values raise pydantic's ValidationError naming the field). Typed settings
    given as `overrides` are returned as they are when they are already the method's class. The one place
    settings are resolved: the commands and the run engine call it once and pass the result down."""
    from goldenlayers.editing import get_method  # registers the methods

    m = get_method(method)
    cls = m.settings
    if isinstance(overrides, EditHParams):
        if isinstance(overrides, cls):
            return overrides
        return cls.model_validate(overrides.model_dump(exclude_unset=True))
    if preset is None:
        choice = preset_choice(model, name)
        preset = choice.preset
        log.info("editing preset %s: %s", choice.preset, choice.reason)
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if m.family not in PRESETS[preset]:
        raise KeyError(f"preset {preset!r} has no settings for {m.name} (it has {sorted(PRESETS[preset])})")
    values = {k: v for k, v in PRESETS[preset][m.family].items() if k in cls.model_fields}
    return cls.model_validate({**values, **(overrides or {})})
