"""The train-world recipe on CPU: tokenizer, recall measurement (checked against step-by-step greedy decoding),
training a small model to high recall, and the saved folder loading back through load_model."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from pydantic import ValidationError

from goldenlayers.datasets.synthetic import (
    World,
    build_world,
    measure_recall,
    train_tokenizer,
    train_world_model,
)
from goldenlayers.datasets.synthetic.recall import encode_queries, recall_hits
from goldenlayers.datasets.synthetic.training import TrainSettings, build_model
from goldenlayers.models import get_adapter, load_model
from goldenlayers.text import encode_answers


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(people=20, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, world):
    out = tmp_path_factory.mktemp("gpt2-world")
    report = train_world_model("gpt2", world, out, n_layers=2, d_model=128, max_steps=400, seed=0, progress=False,
                               vocab_size=400, batch_size=64, lr=1e-2, warmup=20, weight_decay=0.0, eval_every=50)
    return out, report


def _greedy_hits(model, tok, queries) -> list[bool]:
    """Independent check: decode token by token with argmax, one query at a time, and compare the text."""
    hits = []
    for _, prompt, answer in queries:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        n_answer = len(tok(prompt + " " + answer)["input_ids"]) - ids.shape[1]
        with torch.no_grad():
            for _ in range(n_answer):
                ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], dim=1)
        hits.append(tok.decode(ids[0, -n_answer:]) == " " + answer)
    return hits


@pytest.mark.parametrize("add_bos", [False, True])
def test_world_tokenizer(world, add_bos):
    tok = train_tokenizer(world.training_corpus(), vocab_size=400, add_bos=add_bos)
    assert len(tok) == 400 and tok.pad_token == "<pad>" and tok.eos_token == "<|endoftext|>"
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id}) == 3
    _, prompt, answer = world.recall_queries()[0]
    enc = tok(prompt + " " + answer, return_offsets_mapping=True)
    assert (enc["input_ids"][0] == tok.bos_token_id) == add_bos
    b = encode_answers(tok, [prompt], [answer])
    answer_ids = b.input_ids[0][b.answer_mask[0]].tolist()
    assert tok.decode(answer_ids) == " " + answer and b.prompt_last.item() == b.answer_mask[0].nonzero()[0].item() - 1


def test_train_small_gpt2_reaches_high_recall_and_reloads(trained, world):
    out, report = trained
    assert report["recall"]["all"] >= 0.95  # observed 0.976 after 400 steps (2 layers, d 128, 20 people)
    assert set(report["recall"]) == set(world.relations) | {"city_country", "company_hq", "all"}
    assert report["history"][0]["sample_recall"] < 0.2 < report["history"][-1]["sample_recall"]
    saved = json.loads((out / "training.json").read_text())
    assert saved["recall"] == report["recall"] and saved["seed"] == 0 and saved["torch"] == torch.__version__
    assert World.load(out / "world.json").training_corpus() == world.training_corpus()
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    lm = load_model(out)
    assert lm.adapter.n_layers(lm.model) == 2
    again = measure_recall(lm.model, lm.tokenizer, world)
    assert again == report["recall"]

    # batched teacher-forced recall == token-by-token greedy decoding, on every miss and a sample of hits
    queries = world.recall_queries()
    fast = recall_hits(lm.model, encode_queries(lm.tokenizer, queries, batch_size=37))
    assert sum(fast) / len(fast) == report["recall"]["all"]
    misses = [q for q, h in zip(queries, fast) if not h]
    some_hits = [q for q, h in zip(queries, fast) if h][::20]
    assert len(misses) >= 1 and len(some_hits) >= 20
    assert _greedy_hits(lm.model, lm.tokenizer, misses + some_hits) == [False] * len(misses) + [True] * len(some_hits)
    per = measure_recall(lm.model, lm.tokenizer, world, queries=misses + some_hits)
    assert per["all"] == pytest.approx(len(some_hits) / (len(misses) + len(some_hits)))


def test_llama_recipe_saves_and_reloads(tmp_path, world):
    report = train_world_model("llama", world, tmp_path, n_layers=1, d_model=64, max_steps=30, seed=1,
                               progress=False, vocab_size=400, batch_size=32, eval_every=100, lr=1e-2, warmup=5)
    assert report["steps"] == 30 and report["settings"]["arch"] == "llama"
    lm = load_model(tmp_path)
    assert lm.model.config.model_type == "llama" and lm.tokenizer("x")["input_ids"][0] == lm.tokenizer.bos_token_id
    assert measure_recall(lm.model, lm.tokenizer, world) == report["recall"]


def test_default_checkpoints_fit_in_25_mb(world):
    """Shipped shape (8 layers, d 128, d_ff 512, 2048-token BPE): both float32 checkpoints together <= 25 MB."""
    tok = train_tokenizer(world.training_corpus(), vocab_size=2048)
    total = 0
    for arch in ("gpt2", "llama"):
        model = build_model(TrainSettings(arch=arch), tok)
        assert get_adapter(model).n_layers(model) == 8 and get_adapter(model).d_ff(model) == 512
        total += 4 * sum(p.numel() for p in model.parameters())
    assert total + 2 * 300_000 <= 25_000_000  # tokenizer.json of a 2k-token BPE is ~100-300 kB


def test_settings_are_validated(world, tmp_path):
    with pytest.raises(ValidationError, match="bogus"):
        train_world_model("gpt2", world, tmp_path, bogus=1)
    with pytest.raises(ValidationError):
        train_world_model("bert", world, tmp_path)


def test_cli_train_world_writes_folder_and_reports_missed_target(tmp_path):
    from typer.testing import CliRunner

    from goldenlayers.cli import app

    out = tmp_path / "m"
    res = CliRunner().invoke(app, ["train-world", "--arch", "gpt2", "--out", str(out), "--people", "20", "--layers", "1",
                                   "--d-model", "32", "--heads", "2", "--max-steps", "5", "--eval-every", "5",
                                   "--batch-size", "8", "--vocab-size", "400", "--device", "cpu"])
    assert res.exit_code == 1 and "raise --max-steps" in res.output  # 5 steps cannot reach 99% recall
    saved = json.loads((out / "training.json").read_text())
    assert saved["steps"] == 5 and saved["command"].startswith("goldenlayers") and saved["world"]["people"] == 20
    lm = load_model(out)
    assert saved["recall"]["all"] < 0.5 and lm.adapter.n_layers(lm.model) == 1
