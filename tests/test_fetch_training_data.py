"""The training-data fetcher: the committed manifest, and a changed package stopping the fetch."""

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest

from tools.fetch_training_data import MANIFEST, FetchError, Package, fetch_package, load_manifest, main


def test_the_manifest_lists_each_file_once_with_its_hash_and_licence():
    manifest = json.loads(MANIFEST.read_text())
    packages, entries = load_manifest()
    names = {p.name for p in packages}
    files = manifest["files"]
    assert len({f["file"] for f in files}) == len(files) == sum(map(len, entries.values()))
    for f in files:
        assert f["package"] in names and f["kind"] in ("photo", "clip") and f["licence"]
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"])
        assert f["file"].startswith("photos/" if f["kind"] == "photo" else "clips/")
        assert "lena" not in f["file"].lower() and "lenna" not in f["file"].lower()
    assert sum(f["kind"] == "photo" for f in files) >= 100
    assert set(manifest["dropped"]) <= names
    # the held-out photos (scikit-image, scikit-learn) are never training data
    assert not names & {"scikit-image", "scikit-learn"}


def fake_wheel(folder: Path, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fakepkg/photo.png", content)
    return path


def test_a_changed_file_stops_the_fetch_with_both_hashes(tmp_path):
    recorded = hashlib.sha256(b"the photo as recorded").hexdigest()
    package = Package("fakepkg", "pypi", "1.0", "fakepkg-1.0-*.whl")
    entry = dict(
        file="clips/fakepkg/photo.png",
        kind="clip",
        package="fakepkg",
        version="1.0",
        inner_path="fakepkg/photo.png",
        sha256=recorded,
        licence="MIT",
    )
    fake_wheel(tmp_path / "downloads" / "pypi", b"the photo, changed")  # already downloaded: no registry needed
    with pytest.raises(FetchError, match="no longer matches the manifest") as error:
        fetch_package(package, [entry], tmp_path, 64)
    assert recorded in str(error.value) and hashlib.sha256(b"the photo, changed").hexdigest() in str(error.value)
    assert not (tmp_path / "clips").exists()


def test_a_matching_file_is_placed_and_the_command_reports_failures(tmp_path, capsys):
    content = b"the photo as recorded"
    package = Package("fakepkg", "pypi", "1.0", "fakepkg-1.0-*.whl")
    entry = dict(
        file="clips/fakepkg/photo.png",
        kind="clip",
        package="fakepkg",
        version="1.0",
        inner_path="fakepkg/photo.png",
        sha256=hashlib.sha256(content).hexdigest(),
        licence="MIT",
    )
    fake_wheel(tmp_path / "out" / "downloads" / "pypi", content)
    assert fetch_package(package, [entry], tmp_path / "out", 64) == 1
    assert (tmp_path / "out" / "clips/fakepkg/photo.png").read_bytes() == content
    manifest = {
        "packages": [{"name": "fakepkg", "registry": "pypi", "version": "1.0", "archive": "fakepkg-1.0-*.whl"}],
        "files": [entry | {"sha256": "0" * 64}],
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    assert main(["--out", str(tmp_path / "out"), "--manifest", str(tmp_path / "m.json")]) == 1
    assert "error: fakepkg 1.0" in capsys.readouterr().err


def test_score_checkpoint_compares_per_photo_and_on_both_means():
    from tools.score_checkpoint import compare
    from vqtok.evaluation import Evaluation, FileScore

    def evaluation(model: str, figures: dict[str, tuple[float, float]]) -> Evaluation:
        scores = [FileScore(Path(f"photos/{n}.png"), "image", (64, 64), p, s, 64) for n, (p, s) in figures.items()]
        return Evaluation(model, 16, scores)

    base = evaluation("image", {"a": (25.0, 0.70), "b": (27.0, 0.80)})
    better = evaluation("new", {"a": (26.0, 0.75), "b": (27.5, 0.81)})
    lines, figures = compare(base, better, ("image", "new"))
    assert figures["beats_baseline"] and figures["candidate"]["mean_psnr"] == pytest.approx(26.75)
    assert lines[1].split()[0] == "a" and "+1.00" in lines[1] and lines[-1].startswith("mean")
    sharper_but_noisier = evaluation("new", {"a": (24.0, 0.75), "b": (27.5, 0.81)})
    assert not compare(base, sharper_but_noisier, ("image", "new"))[1]["beats_baseline"]  # both means must rise
