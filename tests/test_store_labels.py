"""`vqtok tokenize --labels folder`: a class per item from the ImageFolder layout, listed in store.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from store_files import export_model, read_jsonl, write_images

import vqtok
from vqtok.cli.main import main
from vqtok.errors import FileFormatError
from vqtok.pretokenize.sources import folder_label
from vqtok.store import TokenStore


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("models"), "tiny", seed=0)


def tokenize(*args: object) -> int:
    return main(["tokenize", *map(str, args), "--no-progress", "--workers", "0"])


def test_folder_labels_follow_the_first_folder_under_the_root():
    assert folder_label("/d/cat/a.png", ["/d"]) == "cat"
    assert folder_label("/d/cat/sub/b.png", ["/d"]) == "cat"  # deeper folders belong to their first folder's class
    assert folder_label("/d/c.png", ["/d"]) is None  # directly in the root: no class
    assert folder_label("/e/dog/c.png", ["/d"]) is None
    assert folder_label("/d/x/dog/c.png", ["/d", "/d/x"]) == "dog"  # the deepest root that holds it counts


def test_labelled_store_records_classes_and_the_reader_exposes_them(model, tmp_path, capsys):
    data = tmp_path / "data"
    cats = write_images(data / "cat", 4, [(32, 32), (24, 40)], seed=1)  # some in cat/sub/: still class "cat"
    dogs = write_images(data / "dog", 3, [(32, 32)], seed=2)
    loose = write_images(data, 1, [(32, 32)], seed=3)  # directly in the root: recorded as failed, not guessed
    store_dir = tmp_path / "store"
    assert tokenize(data, "--model", model, "--out", store_dir, "--labels", "folder") == 0
    assert "7 done, 0 skipped as already done, 1 failed" in capsys.readouterr().out
    (error,) = read_jsonl(store_dir / "errors.jsonl")
    assert error["source"] == str(loose[0]) and "class folder" in error["error"]

    meta = json.loads((store_dir / "store.json").read_text())
    assert meta["classes"] == ["cat", "dog"] and meta["preprocess"]["labels"] == "folder"
    store = TokenStore(store_dir)
    assert store.classes == ["cat", "dog"]
    tok = vqtok.load(model)
    for paths, label in ((cats, 0), (dogs, 1)):
        for path in paths:
            item = store[str(path)]
            assert item.label == label == store.label(store.index_of(path))
            assert torch.equal(item.ids, tok.encode(path)[0])  # labels change nothing about the ids
    assert {r["label"] for r in read_jsonl(store_dir / "manifest.jsonl")} == {"cat", "dog"}

    # extending the store with a new class folder adds the class; labels index the sorted names
    write_images(data / "bird", 2, [(32, 32)], seed=4)
    assert tokenize(data, "--model", model, "--out", store_dir, "--labels", "folder") == 0
    store = TokenStore(store_dir)
    assert store.classes == ["bird", "cat", "dog"] and len(store) == 9
    assert store[str(cats[0])].label == 1 and store[str(dogs[0])].label == 2

    # adding to a labelled store without --labels is refused (another preprocessing)
    assert tokenize(data, "--model", model, "--out", store_dir) == 2
    assert "preprocessing" in capsys.readouterr().err


def test_unlabelled_stores_are_unchanged_and_labels_need_folders(model, tmp_path, capsys):
    data = tmp_path / "data"
    paths = write_images(data / "cat", 2, [(32, 32)])
    store_dir = tmp_path / "store"
    assert tokenize(data, "--model", model, "--out", store_dir) == 0
    meta = json.loads((store_dir / "store.json").read_text())
    assert "classes" not in meta and "labels" not in meta["preprocess"]  # the same files as before labels existed
    assert all("label" not in r for r in read_jsonl(store_dir / "manifest.jsonl"))
    store = TokenStore(store_dir)
    assert store.classes is None and store[0].label is None and store.label(1) is None

    capsys.readouterr()
    assert tokenize(paths[0], "--model", model, "--out", tmp_path / "s2", "--labels", "folder") == 2
    assert "every SRC must be a folder" in capsys.readouterr().err


def test_a_manifest_label_missing_from_the_classes_is_refused(model, tmp_path):
    data = tmp_path / "data"
    write_images(data / "cat", 1, [(32, 32)])
    store_dir = tmp_path / "store"
    assert tokenize(data, "--model", model, "--out", store_dir, "--labels", "folder") == 0
    meta = json.loads((store_dir / "store.json").read_text())
    (store_dir / "store.json").write_text(json.dumps({**meta, "classes": ["dog"]}))
    with pytest.raises(FileFormatError, match="not among the store's classes"):
        TokenStore(store_dir)
