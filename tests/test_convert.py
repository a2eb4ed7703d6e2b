"""vqtok convert: published checkpoints (taming, LlamaGen, diffusers) -> vqtok exports, checked against the authors'
own modules at a small size with random weights (tests/convert_refs.py), plus the safe pickle reader, hub names
through huggingface_hub's cache (offline) and the model card.

The parity figures print with ``-s``: ``python -m pytest tests/test_convert.py -k parity -s``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import convert_refs as refs
import numpy as np
import pytest
import torch
from PIL import Image

import vqtok
from vqtok.convert.pickle_reader import read_checkpoint
from vqtok.errors import ExportError, FileFormatError
from vqtok.synthetic import render_dead_leaves

MIN_SAME_IDS = 0.999  # the share of positions whose id must equal the reference's (ties aside)
MAX_DECODE_ERROR = 1e-4  # max abs difference of decoded pixels, fp32, from the same ids

taming_modules = pytest.importorskip(
    "taming.modules.diffusionmodules.model",
    reason="the taming and LlamaGen references need taming-transformers' modules: "
    "pip install --no-deps taming-transformers==0.0.1 (as .ci/run does)",
)


def vqtok_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vqtok.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def measure(encode, decode_ids, tok: vqtok.Tokenizer) -> dict[str, tuple[float, int, float]]:
    """Per input kind: (share of ids equal to the reference's, positions, max abs decode difference)."""
    figures = {}
    for kind, x in refs.inputs().items():
        with torch.no_grad():
            ids_ref = encode(x)
            ids = tok.encode(x)
            y_ref = decode_ids(ids_ref)
            y = tok.model.decode_ids(ids_ref)  # unclamped, as the reference's
        same = (ids == ids_ref).float().mean().item()
        figures[kind] = (same, ids.numel(), (y - y_ref).abs().max().item())
    return figures


def report_and_check(source: str, figures: dict[str, tuple[float, int, float]]) -> None:
    for kind, (same, n, err) in figures.items():
        print(f"\nparity {source} {kind}: ids identical {same:.3%} of {n} positions, decoded max abs diff {err:.1e}")
    for kind, (same, n, err) in figures.items():
        assert same >= MIN_SAME_IDS, f"{source} {kind}: ids equal on {same:.3%} of {n} positions only"
        assert err <= MAX_DECODE_ERROR, f"{source} {kind}: decoded differs by {err}"


@pytest.fixture(scope="module")
def taming_ckpt(tmp_path_factory) -> tuple[refs.TamingVQGAN, Path]:
    torch.manual_seed(0)
    model = refs.TamingVQGAN().eval()
    path = tmp_path_factory.mktemp("taming") / "vqgan_tiny_f4_64" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    refs.save_taming_ckpt(model, path)
    return model, path


@pytest.fixture(scope="module")
def llamagen_pt(tmp_path_factory) -> tuple[refs.LlamaGenVQ, Path]:
    torch.manual_seed(0)
    model = refs.LlamaGenVQ().eval()
    path = tmp_path_factory.mktemp("llamagen") / "vq_ds4_c2i.pt"
    refs.save_llamagen_pt(model, path)
    return model, path


# -- the reader: nothing in a checkpoint runs -------------------------------------------------------------------


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_runs_nothing_and_the_error_names_it(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _Payload(marker)}, path)
    # the control: torch's full unpickler runs the payload, so the file is live
    control = [sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"]
    subprocess.run(control, check=True, capture_output=True)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(FileFormatError, match=r"state_dict is not a dict of named tensors.*posix\.system"):
        vqtok.convert(path, tmp_path / "out", from_="taming")
    r = vqtok_cli("convert", str(path), str(tmp_path / "out"), "--from", "taming")
    assert r.returncode == 2 and "posix.system: never imported or called" in r.stderr, r.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_payload_beside_real_weights_is_ignored(tmp_path, taming_ckpt):
    """A checkpoint that would run a command on load converts: the payload stays an inert record."""
    marker = tmp_path / "payload-ran"
    ckpt = torch.load(taming_ckpt[1], weights_only=False)  # our own fixture
    ckpt["hyper_parameters"] = {"hook": _Payload(marker)}
    torch.save(ckpt, tmp_path / "last.ckpt")
    reader = read_checkpoint(tmp_path / "last.ckpt")
    assert (
        "posix.system" in reader.named
        and "InertObject" in type(reader.root["hyper_parameters"]["hook"]).__mro__[1].__name__
    )
    out = vqtok.convert(tmp_path / "last.ckpt", tmp_path / "out", from_="taming")
    assert (out / "config.json").is_file() and not marker.exists()


def test_reader_refuses_damaged_archives(tmp_path, taming_ckpt):
    data = taming_ckpt[1].read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError):
        vqtok.convert(tmp_path / "cut.ckpt", tmp_path / "out", from_="taming")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))
    with pytest.raises(FileFormatError, match="zip format"):
        read_checkpoint(tmp_path / "plain.pkl")


def test_weights_only_files_are_read_by_torch(tmp_path):
    state = {"a": torch.randn(3, 4), "b": torch.arange(6).reshape(2, 3).t()}
    torch.save({"model": state}, tmp_path / "plain.pt")
    ckpt = read_checkpoint(tmp_path / "plain.pt")
    assert ckpt.named == [] and all(torch.equal(ckpt.tensors(ckpt.root["model"], "m")[k], v) for k, v in state.items())


def test_inert_reader_rebuilds_strided_and_typed_tensors(tmp_path):
    state = {"t": torch.randn(4, 3).t(), "h": torch.randn(5).half(), "i": torch.arange(10)[2:7], "b": torch.ones(2) > 0}
    torch.save({"state_dict": state, "args": __import__("argparse").Namespace(x=1)}, tmp_path / "x.ckpt")
    ckpt = read_checkpoint(tmp_path / "x.ckpt")
    assert "argparse.Namespace" in ckpt.named
    got = ckpt.tensors(ckpt.root["state_dict"], "state_dict")
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in state.items())


# -- parity with the authors' modules --------------------------------------------------------------------------


def test_taming_parity(tmp_path, taming_ckpt):
    model, path = taming_ckpt
    with pytest.raises(pickle.UnpicklingError):  # the file names Lightning's callback class: weights_only refuses
        torch.load(path, weights_only=True)
    out = vqtok.convert(path, tmp_path / "taming", from_="taming")
    tok = vqtok.load(out)
    assert tok.config.attention_levels == [1] and not tok.config.l2_normalize
    assert tok.config.name == "vqgan_tiny_f4_64" and tok.config.license == "mit"
    report_and_check("taming", measure(model.encode, model.decode_ids, tok))


def test_llamagen_parity(tmp_path, llamagen_pt):
    model, path = llamagen_pt
    out = vqtok.convert(path, tmp_path / "llamagen", from_="llamagen")
    tok = vqtok.load(out)
    assert tok.config.attention_levels == [2] and tok.config.l2_normalize and tok.config.code_dim == 8
    assert tok.config.source == "LlamaGen vq_ds4_c2i"
    report_and_check("llamagen", measure(model.encode, model.decode_ids, tok))


def test_diffusers_parity(tmp_path):
    model = refs.diffusers_vqmodel()
    model.save_pretrained(tmp_path / "vq")
    (tmp_path / "README.md").write_text("---\nlicense: openrail++\nlibrary_name: diffusers\n---\n# a pipeline\n")
    shutil.move(tmp_path / "vq", tmp_path / "vqvae")  # a pipeline's layout: the VQModel in vqvae/
    out = vqtok.convert(tmp_path, tmp_path / "converted", from_="diffusers", name="tiny-vqmodel")
    tok = vqtok.load(out)
    assert tok.config.norm_groups == 16 and tok.config.attention_levels == [1] and tok.config.license == "openrail++"
    encode = lambda x: refs.diffusers_encode(model, x)  # noqa: E731
    decode = lambda ids: refs.diffusers_decode_ids(model, ids)  # noqa: E731
    report_and_check("diffusers", measure(encode, decode, tok))


@pytest.fixture(scope="module")
def open_magvit2_ckpt(tmp_path_factory) -> tuple[refs.OpenMagvit2, Path]:
    torch.manual_seed(0)
    model = refs.OpenMagvit2().eval()
    path = tmp_path_factory.mktemp("open-magvit2") / "imagenet_tiny_L.ckpt"
    refs.save_open_magvit2_ckpt(model, path)
    model.use_ema_weights()  # the published figures are the EMA weights', and the converter takes those
    return model, path


def test_open_magvit2_parity(tmp_path, open_magvit2_ckpt):
    model, path = open_magvit2_ckpt
    out = vqtok.convert(path, tmp_path / "omg", from_="open-magvit2")
    tok = vqtok.load(out)
    assert tok.config.backbone == "magvit2" and tok.config.quantizer == "lfq" and tok.codebook_size == 2**10
    assert tok.config.license == "apache-2.0"
    report_and_check("open-magvit2", measure(model.encode, model.decode_ids, tok))


@pytest.mark.slow
def test_open_magvit2_fingerprint_tells_weights_apart(tmp_path, open_magvit2_ckpt):
    """With no 1x1 convs around LFQ's codes, the fingerprint hashes the convs into and out of code space."""
    torch.manual_seed(1)
    other = refs.OpenMagvit2().eval()
    refs.save_open_magvit2_ckpt(other, tmp_path / "other.ckpt")
    a = vqtok.load(vqtok.convert(open_magvit2_ckpt[1], tmp_path / "a", from_="open-magvit2"))
    b = vqtok.load(vqtok.convert(tmp_path / "other.ckpt", tmp_path / "b", from_="open-magvit2"))
    assert a.config.architecture() == b.config.architecture() and a.fingerprint != b.fingerprint


def test_wrong_source_is_named(tmp_path, llamagen_pt):
    with pytest.raises(FileFormatError, match="no 'state_dict' entry"):
        vqtok.convert(llamagen_pt[1], tmp_path / "out", from_="taming")
    with pytest.raises(vqtok.ConfigError, match="unknown source"):
        vqtok.convert(llamagen_pt[1], tmp_path / "out", from_="maskgit")
    ckpt = torch.load(llamagen_pt[1], weights_only=False)  # our own fixture
    ckpt["model"]["encoder.conv_blocks.0.extra.weight"] = torch.zeros(3)  # a part vqtok's model lacks
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(vqtok.ConfigError, match=r"no place for: \['encoder.conv_blocks.0.extra.weight'\]"):
        vqtok.convert(tmp_path / "extra.pt", tmp_path / "out", from_="llamagen")


def test_fingerprints_of_older_configs_are_unchanged():
    """New fields at their defaults leave config.json and the fingerprint as they were."""
    config = vqtok.TokenizerConfig.from_name("tiny")
    assert not {"attention_levels", "source", "license"} & set(config.to_dict())
    labelled = vqtok.TokenizerConfig.from_name("tiny", source="x", license="mit")
    assert labelled.architecture() == config.architecture()


# -- the CLI, tokenize, the model card and hub names -------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(render_dead_leaves(rng, 64)).save(folder / f"{i}.png")
    return folder


@pytest.mark.slow
def test_cli_convert_encode_decode(tmp_path, llamagen_pt, images):
    out = tmp_path / "llamagen"
    r = vqtok_cli("convert", str(llamagen_pt[1]), str(out), "--from", "llamagen", "--name", "vq-tiny")
    assert r.returncode == 0, r.stderr
    assert "LlamaGen" in r.stdout and "licence mit" in r.stdout
    r = vqtok_cli("encode", str(images / "0.png"), "--model", str(out), "--out", str(tmp_path / "t.safetensors"))
    assert r.returncode == 0, r.stderr
    r = vqtok_cli("decode", str(tmp_path / "t.safetensors"), "--model", str(out), "--out", str(tmp_path / "dec"))
    assert r.returncode == 0, r.stderr
    tok = vqtok.load(out)
    x = torch.from_numpy(np.array(Image.open(images / "0.png"))).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        ids_ref = llamagen_pt[0].encode(x)
    assert torch.equal(tok.encode(x), ids_ref)


@pytest.mark.slow
def test_cli_tokenize_a_folder_with_a_converted_model(tmp_path, taming_ckpt, images):
    out = vqtok.convert(taming_ckpt[1], tmp_path / "taming", from_="taming")
    r = vqtok_cli("tokenize", str(images), "--model", str(out), "--out", str(tmp_path / "store"), "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    store = vqtok.TokenStore(tmp_path / "store")
    assert len(store) == 3
    with torch.no_grad():
        model = taming_ckpt[0]
        for item in store:
            x = torch.from_numpy(np.array(Image.open(item.source))).permute(2, 0, 1)[None].float() / 127.5 - 1
            assert torch.equal(item.ids.long(), model.encode(x)[0])


@pytest.mark.slow
def test_model_card_is_read_by_huggingface_hub(tmp_path, taming_ckpt):
    hub = pytest.importorskip("huggingface_hub", reason="model cards are read with huggingface_hub")
    out = vqtok.convert(taming_ckpt[1], tmp_path / "taming", from_="taming")
    card = hub.ModelCard.load(out / "README.md")
    assert card.data.library_name == "vqtok" and card.data.license == "mit"
    assert vqtok.load(out).fingerprint in card.text


def lay_out_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "a" * 40) -> Path:
    """huggingface_hub's cache layout: blobs/<sha256>, snapshots/<revision>/<file> -> blob, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name, src in files.items():
        blob = repo / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, blob)
        link = repo / "snapshots" / revision / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo / "snapshots" / revision


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    pytest.importorskip("huggingface_hub", reason="hub names need huggingface_hub")
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hub_name_converts_once_and_caches_beside_the_download(offline_hub, llamagen_pt):
    snapshot = lay_out_hub_cache(offline_hub, "someone/LlamaGen", {"vq_ds4_c2i.pt": llamagen_pt[1]})
    tok = vqtok.load("hf://someone/LlamaGen/vq_ds4_c2i.pt", convert_from="llamagen")
    cached = snapshot / "vq_ds4_c2i.pt.vqtok-llamagen"
    assert (cached / "config.json").is_file() and (cached / "README.md").is_file()
    assert tok.config.source == "hf://someone/LlamaGen/vq_ds4_c2i.pt (llamagen)"
    assert "base_model: someone/LlamaGen" in (cached / "README.md").read_text()
    stamp = (cached / "encoder.safetensors").stat().st_mtime_ns
    again = vqtok.load("hf://someone/LlamaGen/vq_ds4_c2i.pt", convert_from="llamagen")
    assert (cached / "encoder.safetensors").stat().st_mtime_ns == stamp  # read from the cache, not converted again
    assert again.fingerprint == tok.fingerprint
    x = refs.inputs()["real-looking"]
    with torch.no_grad():
        assert torch.equal(again.encode(x), llamagen_pt[0].encode(x))


def test_hub_name_missing_offline_is_a_clear_error(offline_hub):
    with pytest.raises(ExportError, match=r"not in the Hugging Face cache .* downloads are off"):
        vqtok.load("hf://someone/absent/vq.pt", convert_from="llamagen")
    with pytest.raises(vqtok.InputError, match="convert_from is for hub names"):
        vqtok.load("some/local.pt", convert_from="llamagen")


@pytest.mark.slow
def test_a_vqtok_export_round_trips_through_the_hub_layout(offline_hub, tmp_path, taming_ckpt):
    """What `vqtok export` (or convert) writes is what a hub repository of it holds: load it by its hub name."""
    out = vqtok.convert(taming_ckpt[1], tmp_path / "export", from_="taming")
    lay_out_hub_cache(offline_hub, "me/my-tokenizer", {p.name: p for p in out.iterdir()})
    tok = vqtok.load("hf://me/my-tokenizer")
    assert tok.fingerprint == vqtok.load(out).fingerprint


@pytest.mark.slow
def test_cli_convert_of_a_hub_name_offline(offline_hub, llamagen_pt, tmp_path):
    lay_out_hub_cache(offline_hub, "someone/LlamaGen", {"vq_ds4_c2i.pt": llamagen_pt[1]})
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(offline_hub)}
    r = vqtok_cli("convert", "hf://someone/LlamaGen/vq_ds4_c2i.pt", str(tmp_path / "o"), "--from", "llamagen", env=env)
    assert r.returncode == 0, r.stderr
    r = vqtok_cli("convert", "hf://someone/LlamaGen/other.pt", "--from", "llamagen", env=env)
    assert r.returncode == 2 and "not in the Hugging Face cache" in r.stderr


@pytest.mark.slow
def test_a_hub_name_with_its_source_works_wherever_a_model_name_does(offline_hub, llamagen_pt, images):
    """``?from=SOURCE`` makes the name self-contained: the app's model list and the CLI's --model take it."""
    pytest.importorskip("gradio", reason="the app needs gradio")
    from app.models import ModelRegistry

    lay_out_hub_cache(offline_hub, "someone/LlamaGen", {"vq_ds4_c2i.pt": llamagen_pt[1]})
    name = "hf://someone/LlamaGen/vq_ds4_c2i.pt?from=llamagen"
    registry = ModelRegistry.discover([name])
    (entry,) = registry.entries.values()
    x = refs.inputs()["real-looking"]
    with torch.no_grad():
        assert torch.equal(registry.get(entry.name).encode(x), llamagen_pt[0].encode(x))
    assert vqtok.resolve_export(name) == entry.path
    with pytest.raises(vqtok.InputError, match="says \\?from=llamagen"):
        vqtok.load(name, convert_from="taming")


@pytest.mark.slow
def test_readme_hub_example_runs_against_a_cache_of_that_layout(offline_hub, llamagen_pt):
    """The README's example, with the tiny LlamaGen fixture standing in for vq_ds16_c2i.pt in the cache."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "convert_from=" in b)
    lay_out_hub_cache(offline_hub, "FoundationVision/LlamaGen", {"vq_ds16_c2i.pt": llamagen_pt[1]})
    scope: dict = {}
    exec(compile(block, "README.md hub example", "exec"), scope)
    f = scope["tok"].downsample
    assert scope["ids"].shape == (1, 256 // f, 256 // f) and scope["tok"].config.source.startswith("hf://")
