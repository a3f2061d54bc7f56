"""Shared test setup: offline Hugging Face, 2 torch threads, tiny models and tokenizers built in-process.

Fixtures:
    tok, tok_bos        tiny fast byte-level BPE tokenizers without / with a BOS token (session-wide, read-only)
    tok_for             tok_for(model_type): the one of them that matches the architecture's real tokenizer
    tiny_arch           parametrised over every TINY_ARCHITECTURES entry: (model_type, fresh float64 model)
    make_tiny           make_tiny(model_type, **kw): a fresh tiny float32 model
    one_thread          torch on one thread for the test (token-by-token generation on tiny models is faster so)
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from goldenlayers.models.tiny import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer

torch.set_num_threads(2)

# Architectures whose real tokenizers add a BOS token (LLaMA, Mistral, Gemma, ...); GPT-2-like ones do not.
NO_BOS_ARCHITECTURES = frozenset({"gpt2", "gptj", "gpt_neox", "opt"})


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: skipped where torch sees none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer(add_bos=False)


@pytest.fixture(scope="session")
def tok_bos():
    return tiny_tokenizer(add_bos=True)


@pytest.fixture(scope="session")
def tok_for(tok, tok_bos):
    """tok_for(model_type): BOS-adding tokenizer for LLaMA/Gemma-like architectures, the plain one otherwise."""
    return lambda model_type: tok if model_type in NO_BOS_ARCHITECTURES else tok_bos


@pytest.fixture(params=TINY_ARCHITECTURES)
def tiny_arch(request):
    """(model_type, fresh tiny float64 model) for every covered architecture."""
    return request.param, tiny_model(request.param, dtype=torch.float64)


@pytest.fixture
def make_tiny():
    """make_tiny(model_type, **kw): a fresh tiny float32 model (goldenlayers.models.tiny.tiny_model)."""
    return lambda model_type, **kw: tiny_model(model_type, **kw)


@pytest.fixture
def one_thread():
    """Token-by-token generation on tiny models runs faster on one thread (and the CI machine has two cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty goldenlayers cache root of the test's own ($GOLDENLAYERS_CACHE): nothing fetched, converted or
    collected leaks between tests or into the user's cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(root))
    return root
