"""Key statistics C = E[k k^T] (docs/equations.md "Editing methods"): against keys recorded one text at a time, padding,
token budget, one pass vs per layer, the on-disk cache (hits, keys), C = I, NaN/singular checks, text sources."""

import os
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from goldenlayers.editing.hparams import resolve_settings
from goldenlayers.editing.solve import KeyCov, StatsError
from goldenlayers.editing.sources import SourceError, open_source
from goldenlayers.editing.stats import (
    StatsCache,
    StatsSettings,
    StatsSourceError,
    check_stats,
    collect_key_stats,
    key_stats,
    resolve_key_stats,
)
from goldenlayers.models import get_adapter
from goldenlayers.models.hooks import record
from goldenlayers.models.tiny import tiny_model

TEXTS = ["Maria Lopez was born in Paris.", "Tom Baker works for Acme.", "The capital of France is Paris.",
         "Anna Smith plays the violin.", "Lionel Messi plays soccer.", "Danielle Darrieux speaks French.",
         "The Eiffel Tower is in Paris, which is in France.", "John Smith is a lawyer by profession."] * 3


def reference(model, tok, adapter, layers, texts, max_tokens, max_length=256):
    """C from keys recorded one unpadded text at a time, first `max_tokens` tokens in reading order."""
    keys = {lay: [] for lay in layers}
    for text in texts:
        ids = torch.tensor([tok(text, truncation=True, max_length=max_length)["input_ids"]])
        with record({lay: adapter.down_proj_module(model, lay) for lay in layers}, outputs=False) as rec:
            model(input_ids=ids)
        for lay in layers:
            keys[lay].append(rec[lay]["in"].reshape(-1, adapter.d_ff(model)))
    out = {}
    for lay in layers:
        K = torch.cat(keys[lay])[:max_tokens].to(torch.float64)
        out[lay] = K.T @ K / K.shape[0]
    return out


class Counting:
    """Counts model forwards (pre-hook: also counts forwards cut short by the statistics hooks)."""

    def __init__(self, model):
        self.n = 0
        model.register_forward_pre_hook(self)

    def __call__(self, *_):
        self.n += 1


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "opt"])
def test_equals_independent_computation(model_type, tok_for):
    model, tk = tiny_model(model_type, dtype=torch.float64), tok_for(model_type)
    ad = get_adapter(model)
    C = collect_key_stats(model, tk, ad, [0, 2, 3], TEXTS, max_tokens=250, batch_size=5, progress=False)
    ref = reference(model, tk, ad, [0, 2, 3], TEXTS, 250)
    for lay in (0, 2, 3):
        assert C[lay].dtype == torch.float64 and C[lay].shape == (64, 64) and C[lay].device.type == "cpu"
        torch.testing.assert_close(C[lay], ref[lay], rtol=1e-12, atol=1e-14)
        assert torch.equal(C[lay], C[lay].T)  # the accumulated upper block triangle, mirrored
        assert check_stats(C[lay], lay) < 1e8  # 250 tokens > d_ff = 64: full rank
    assert not torch.allclose(C[0], C[2])


def test_padding_excluded_batch_size_does_not_matter(tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    ad = get_adapter(model)
    one = collect_key_stats(model, tok, ad, [1], TEXTS, 300, batch_size=1, progress=False)[1]
    four = collect_key_stats(model, tok, ad, [1], TEXTS, 300, batch_size=4, progress=False)[1]
    torch.testing.assert_close(one, four, rtol=1e-12, atol=1e-14)
    # the pad token's key is not zero here: counting pads would change C
    with record({"dp": ad.down_proj_module(model, 1)}, outputs=False) as rec:
        model(input_ids=torch.tensor([[tok.pad_token_id]]))
    assert rec["dp"]["in"].abs().sum() > 0


def test_token_budget_is_exact_and_stops_reading(tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    ad = get_adapter(model)
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield TEXTS[i % len(TEXTS)]
            i += 1

    C = collect_key_stats(model, tok, ad, [1], endless(), max_tokens=37, batch_size=2, progress=False)[1]
    torch.testing.assert_close(C, reference(model, tok, ad, [1], TEXTS[:4], 37)[1], rtol=1e-12, atol=1e-14)
    assert len(pulled) <= 4  # 37 tokens need 3 sentences; reading stops with the batch that fills the budget
    short = reference(model, tok, ad, [1], TEXTS[:3], 10 ** 6)[1]
    with pytest.warns(UserWarning, match="ran out after"):
        C = collect_key_stats(model, tok, ad, [1], TEXTS[:3], max_tokens=10 ** 6, progress=False)[1]
    torch.testing.assert_close(C, short, rtol=1e-12, atol=1e-14)


def test_truncation_to_max_length(tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    ad = get_adapter(model)
    C = collect_key_stats(model, tok, ad, [2], TEXTS, 100, max_length=5, progress=False)[2]
    torch.testing.assert_close(C, reference(model, tok, ad, [2], TEXTS, 100, max_length=5)[2],
                               rtol=1e-12, atol=1e-14)


def test_one_pass_equals_one_layer_at_a_time(tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    ad = get_adapter(model)
    counter = Counting(model)
    together = collect_key_stats(model, tok, ad, [3, 0, 1, 2], iter(TEXTS), 200, batch_size=4, progress=False)
    one_pass = counter.n
    apart = collect_key_stats(model, tok, ad, [0, 1, 2, 3], iter(TEXTS), 200, batch_size=4, progress=False,
                              one_layer_at_a_time=True)
    assert counter.n - one_pass == 4 * one_pass  # one pass per layer, over the same replayed texts
    for lay in range(4):
        torch.testing.assert_close(together[lay], apart[lay], rtol=1e-12, atol=1e-14)
    alone = collect_key_stats(model, tok, ad, [2], TEXTS, 200, batch_size=3, progress=False)[2]
    torch.testing.assert_close(together[2], alone, rtol=1e-12, atol=1e-14)


def test_out_of_range_layer(tok):
    model = tiny_model("gpt2")
    with pytest.raises(IndexError, match="layers 0..3"):
        collect_key_stats(model, tok, get_adapter(model), [4], TEXTS, 10, progress=False)


def test_cache_hits_and_missing_layers(tmp_path, tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    ad, counter = get_adapter(model), Counting(model)
    cache, s = StatsCache(tmp_path), StatsSettings(source="toy", tokens=150)
    first = cache.get_or_compute(model, tok, ad, [1, 3], s, texts=TEXTS, progress=False, batch_size=4)
    one_pass = counter.n
    assert one_pass > 1 and len(list(tmp_path.rglob("*.safetensors"))) == 2
    counter.n = 0
    again = cache.get_or_compute(model, tok, ad, [3, 1], s, texts=TEXTS, progress=False, batch_size=4)
    assert counter.n == 0 and list(again) == [3, 1]
    assert all(torch.equal(first[lay], again[lay]) for lay in (1, 3))
    more = cache.get_or_compute(model, tok, ad, [0, 1, 2], s, texts=TEXTS, progress=False, batch_size=4)
    assert counter.n == one_pass  # layers 0 and 2 in one pass, layer 1 from disk
    assert torch.equal(more[1], first[1])
    torch.testing.assert_close(more[2], reference(model, tok, ad, [2], TEXTS, 150)[2], rtol=1e-12, atol=1e-14)
    path = next(tmp_path.rglob("layer002-*.safetensors"))
    assert "tok150-len256-float64" in path.name
    assert path.parent.name.startswith("toy-") and path.parent.parent.name.startswith("GPT2LMHeadModel-")
    assert torch.equal(load_file(path)["C"], more[2])


def test_cache_key_changes_with_weights_budget_and_dtype(tmp_path, tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    ad, counter = get_adapter(model), Counting(model)
    cache, s = StatsCache(tmp_path), StatsSettings(source="toy", tokens=100)
    before = cache.get_or_compute(model, tok, ad, [1], s, texts=TEXTS, progress=False)[1]
    identity = cache.model_identity(model, tok, ad)
    with torch.no_grad():
        ad.weight_param(model, 0)[0, 0] += 1e-9  # an edit of layer 0 changes layer 1's keys
    assert cache.model_identity(model, tok, ad) != identity
    counter.n = 0
    after = cache.get_or_compute(model, tok, ad, [1], s, texts=TEXTS, progress=False)[1]
    assert counter.n > 0 and not torch.equal(before, after)
    for other in (s.model_copy(update={"tokens": 101}), s.model_copy(update={"dtype": "float32"}),
                  s.model_copy(update={"source": "other"})):
        counter.n = 0
        cache.get_or_compute(model, tok, ad, [1], other, texts=TEXTS, progress=False)
        assert counter.n > 0
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5


def test_default_root_and_the_one_switch_for_c(monkeypatch, tmp_path, tok):
    """C = I has one switch, the editing settings' mom2_adjustment: resolve_key_stats gives None (nothing
    collected) without it, C of the settings' layers with it; StatsSettings has no switch of its own."""
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    assert StatsCache().root == tmp_path / "key_stats"
    model = tiny_model("gpt2")
    ad, toy = get_adapter(model), StatsSettings(source=str(tmp_path / "texts"), tokens=80)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("\n\n".join(TEXTS))
    plain = resolve_settings(model, "rome", "generic", dict(layers=[1]))
    assert resolve_key_stats(model, tok, ad, plain, toy, None) is None
    assert not (tmp_path / "key_stats").exists()
    C = resolve_key_stats(model, tok, ad, plain.model_copy(update=dict(mom2_adjustment=True)), toy, None,
                          progress=False)
    assert list(C) == [1] and C[1].shape == (64, 64) and len(list(tmp_path.rglob("*.safetensors"))) == 1
    torch.testing.assert_close(C[1], key_stats(model, tok, ad, [1], toy, progress=False)[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="extra"):
        StatsSettings(mom2="corpus", tokens=5)
    with pytest.raises(StatsSourceError, match="no synthetic world"):
        resolve_key_stats(model, tok, ad, plain.model_copy(update=dict(mom2_adjustment=True)),
                          StatsSettings(), None, model_source=str(tmp_path))


def test_check_stats_refuses_garbage(tok):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 8))
    good = torch.tensor(A.T @ A / 200)
    assert check_stats(good, 3) == pytest.approx(np.linalg.cond(A.T @ A), rel=1e-8)
    bad = good.clone()
    bad[2, 5] = bad[5, 2] = float("nan")
    with pytest.raises(StatsError, match="layer 7 contain NaN"):
        check_stats(bad, 7)
    with pytest.raises(StatsError, match=r"layer 4 have shape \(8, 9\)"):
        check_stats(torch.zeros(8, 9), 4)
    skew = good.clone()
    skew[0, 1] += 1.0
    with pytest.raises(StatsError, match="not symmetric"):
        check_stats(skew, 2)
    low = torch.tensor(A[:5].T @ A[:5] / 5)  # 5 tokens, d_ff = 8: rank 5
    with pytest.raises(StatsError, match=r"layer 9 are singular or ill-conditioned \(rank 5 of 8.*mom2_adjustment=Fa"):
        check_stats(low, 9)
    with pytest.raises(StatsError, match=r"layer 9 are singular or ill-conditioned .*C = I \(mom2_adjustment=False"):
        KeyCov.from_matrix(low, 9, 8)  # the editor's check: the same validator, the same advice
    with pytest.raises(StatsError, match="layer 1 .*condition number"):
        check_stats(torch.diag(torch.tensor([1.0, 1e-13], dtype=torch.float64)), 1)


def test_too_few_tokens_is_refused_and_not_cached(tmp_path, tok):
    model = tiny_model("gpt2", dtype=torch.float64)
    with pytest.raises(StatsError, match=r"layer 2 .*rank \d\d of 64.*more tokens than d_ff=64"):
        StatsCache(tmp_path).get_or_compute(model, tok, get_adapter(model), [2],
                                            StatsSettings(source="toy", tokens=40), texts=TEXTS, progress=False)
    assert not list(tmp_path.rglob("*.safetensors"))


def test_folder_source(tmp_path, tok):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("First paragraph.\n\n  \nSecond one\nstill second.\n")
    (tmp_path / "b" / "c.txt").write_text("Third.")
    (tmp_path / "skip.md").write_text("not a text file")
    src = open_source(tmp_path)
    assert list(src.texts()) == ["First paragraph.", "Second one\nstill second.", "Third."]
    assert list(open_source(tmp_path / "b" / "c.txt").texts()) == ["Third."]
    fp = src.fingerprint
    (tmp_path / "b" / "c.txt").write_text("Third, changed.")
    assert open_source(tmp_path).fingerprint != fp
    model = tiny_model("gpt2", dtype=torch.float64)
    ad = get_adapter(model)
    C = collect_key_stats(model, tok, ad, [0], open_source(tmp_path).texts(), 50, progress=False)[0]  # all 50
    ref = reference(model, tok, ad, [0], ["First paragraph.", "Second one\nstill second.", "Third, changed."], 1000)
    torch.testing.assert_close(C, ref[0], rtol=1e-12, atol=1e-14)


def test_source_errors(monkeypatch, tmp_path):
    with pytest.raises(SourceError, match="unknown text source 'nowhere'.*hf:NAME"):
        open_source("nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no .txt files"):
        open_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="expected 'hf:NAME"):
        open_source("hf:")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(SourceError, match="needs the `datasets` package: pip install datasets"):
        next(open_source("hf:wikitext:wikitext-103-raw-v1").texts())
    with pytest.raises(SourceError, match="no world.json at"):
        open_source(f"world:{tmp_path}")
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_world_source(tmp_path):
    from goldenlayers.datasets.synthetic import build_world

    small = build_world(people=12, seed=3)
    small.save(tmp_path / "world.json")
    src = open_source(f"world:{tmp_path}")  # a folder holding world.json, like a trained model's
    assert list(src.texts()) == small.heldout_corpus() and len(small.heldout_corpus()) == 12 * 8
    assert open_source(f"world:{tmp_path / 'world.json'}").fingerprint == src.fingerprint
    assert open_source("world").fingerprint != src.fingerprint  # the default world (1000 people) is another
    build_world(people=12, seed=4).save(tmp_path / "world.json")
    assert open_source(f"world:{tmp_path}").fingerprint != src.fingerprint  # another world, another cache key


def _fill_cache(root, barrier, out):
    """One process of test_processes_filling_one_entry_collect_once: collect layers 0-3 into `root`."""
    torch.set_num_threads(1)
    from goldenlayers.models.tiny import tiny_tokenizer

    model, tok = tiny_model("gpt2", dtype=torch.float64), tiny_tokenizer()
    cache = StatsCache(root)
    barrier.wait()
    paths = cache.files(model, tok, get_adapter(model), [0, 1, 2, 3], StatsSettings(source="toy", tokens=20_000),
                        texts=TEXTS * 400, progress=False)
    out.put((cache.collected, sorted(p.name for p in paths.values())))


def test_processes_filling_one_entry_collect_once(tmp_path):
    """Two processes (as the ranks of a torchrun launch) ask for the same statistics at once: the cache's lock
    lets one collect while the other waits and then finds the files; no temporary file is left."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_fill_cache, args=(tmp_path, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [n for n, _ in got] == [0, 4] and got[0][1] == got[1][1]
    assert len(list(tmp_path.rglob("*.safetensors"))) == 4 and not list(tmp_path.rglob("*.tmp*"))


@pytest.mark.parametrize("d", [1, 3, 10, 64])
def test_block_triangle_accumulation_gives_the_whole_second_moment(d):
    """Accumulating only the upper block triangle of K^T K (widths that do not split evenly into the panels too)
    and mirroring it gives K^T K, exactly symmetric."""
    from goldenlayers.editing.stats import _accumulate, _symmetric

    g = torch.Generator().manual_seed(d)
    acc = torch.zeros(d, d, dtype=torch.float64)
    ks = [torch.randn(n, d, generator=g, dtype=torch.float64) for n in (5, 1, 17)]
    for k in ks:
        _accumulate(acc, k)
    K = torch.cat(ks)
    C = _symmetric(acc)
    torch.testing.assert_close(C, K.T @ K, rtol=1e-12, atol=1e-12)
    assert torch.equal(C, C.T)


@pytest.mark.gpu
def test_collected_on_a_gpu_equals_the_cpu_result(tok):
    """On a GPU, C comes back through the reused page-locked buffer (one per shape and dtype): the same matrices as
    on the CPU, on the CPU, for every layer."""
    model = tiny_model("gpt2", dtype=torch.float64)
    ad = get_adapter(model)
    cpu = collect_key_stats(model, tok, ad, [0, 1, 3], TEXTS, 200, batch_size=4, progress=False)
    gpu = collect_key_stats(model.cuda(), tok, ad, [0, 1, 3], TEXTS, 200, batch_size=4, progress=False)
    for lay in (0, 1, 3):
        assert gpu[lay].device.type == "cpu" and not gpu[lay].is_pinned()
        torch.testing.assert_close(gpu[lay], cpu[lay], rtol=1e-10, atol=1e-12)
    assert len({gpu[lay].data_ptr() for lay in (0, 1, 3)}) == 3  # each its own copy, not the staging buffer
