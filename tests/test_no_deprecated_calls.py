"""No deprecation warning from the package's own calls into transformers and torch.

pyproject.toml turns DeprecationWarning and FutureWarning into errors, but a warning raised inside a library is
attributed to the library's module (transformers' `past_key_values` -> `cache` notice points at torch's
module.py), and transformers reports some deprecations through its logger, once per process. So these tests run
the paths that call the libraries (template generation and the v* steps with the key/value cache, fluency
sampling) and look at both channels."""

import logging
import warnings
from contextlib import contextmanager

import pytest
from editing_helpers import setup_tiny

from goldenlayers.cases import EditCase
from goldenlayers.editing import edit
from goldenlayers.evaluation.fluency import sample_text

CASE = EditCase(case_id="c0", dataset="t", subject="Tom Baker", prompt="The lawyer is Tom Baker", target_new="Paris")


@contextmanager
def deprecations():
    """Yields a list that collects deprecation warnings and transformers' log records that say 'deprecated'."""
    found = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "deprecat" in record.getMessage().lower():
                found.append(record.getMessage())

    logger = logging.getLogger("transformers")
    once = getattr(logging.Logger, "warning_once", None)
    if hasattr(once, "cache_clear"):
        once.cache_clear()  # transformers logs some notices once per process: let them be seen here
    handler = Catch(logging.WARNING)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            yield found
        found += [f"{w.category.__name__}: {w.message}" for w in seen
                  if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3_text"])
def test_an_edit_and_a_fluency_sample_call_no_deprecated_api(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))  # the templates are generated, not read from disk
    monkeypatch.setenv("GOLDENLAYERS_ACCEL", "suffix=on")  # the cache calls of the suffix replay included
    model, tok, _ = setup_tiny(arch)
    with deprecations() as found:
        r = edit(model, tok, CASE, method="r-rome", layer=1,
                 hparams=dict(context_templates=[(4, 2)], v_num_grad_steps=3))
        r.restore()
        sample_text(model, tok, CASE.prompt, seed=0, max_tokens=12)
    assert r.diagnostics[0].steps == 3
    assert found == []
