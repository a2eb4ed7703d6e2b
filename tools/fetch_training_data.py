"""Fetch the real photos and clips the shipped tokenizers may train on, exactly as the committed manifest lists them.

    python -m tools.fetch_training_data                       # into data/training/ (git-ignored)
    python -m tools.fetch_training_data --only mate-backgrounds gradio
    python -m tools.fetch_training_data --allow-missing       # skip packages that cannot be downloaded

The packages are the ones ``../shared/TRAINING_DATA.md`` allows (Debian, PyPI and npm), downloaded with their
ordinary clients (``apt-get download`` + ``dpkg-deb -x``, ``pip download --no-deps``, ``npm pack``) at the versions
the manifest pins. Only the files the manifest lists are kept: real camera photos and clips, chosen by looking at
every image in each package (the manifest's ``dropped`` section says what was left out and why). Each file's
sha256 is checked against the manifest; a package whose file changed or vanished stops the fetch with a message
that names the package, the file and both hashes, so a run is never trained on data other than what was recorded.

Layout under ``--out`` (default ``data/training``):

- ``downloads/<registry>/``: the archives, as the clients wrote them (kept, so a rerun downloads nothing);
- ``extract/<package>/``: the unpacked archives;
- ``photos/<package>/<name>``: the selected photos, byte for byte (``scipy``'s ``face.dat`` becomes a PNG);
- ``pool/<package>/<stem>.jpg``: the same photos with the shorter side at most ``--pool-side`` (1024) pixels,
  JPEG quality 95: what training reads (decoding a 5120x2880 PNG per crop would starve a 2-core machine);
- ``clips/<name>``: the real video clips.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MANIFEST = Path(__file__).with_name("training_data_manifest.json")
DEFAULT_OUT = Path("data/training")
POOL_SIDE = 1024  # shorter side of the training pool's copies, pixels
POOL_QUALITY = 95


class FetchError(Exception):
    """A package could not be downloaded or unpacked, or its files do not match the manifest."""


@dataclass(frozen=True)
class Package:
    name: str  # as the registry spells it
    registry: str  # "debian", "pypi" or "npm"
    version: str
    archive: str  # file name pattern (glob) of the downloaded archive inside downloads/<registry>/
    pip_args: tuple[str, ...] = ()  # extra pip download arguments (e.g. --no-binary for an sdist)

    @property
    def slug(self) -> str:
        """A folder name for the package (npm scopes contain a slash)."""
        return self.name.replace("@", "").replace("/", "-")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise FetchError(f"`{' '.join(command)}` failed (exit {result.returncode}): {' | '.join(tail)}")


def download(package: Package, downloads: Path) -> Path:
    """The package's archive under ``downloads/<registry>/``, downloaded with the registry's client if absent."""
    folder = downloads / package.registry
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(package.archive))
    if not found:
        if package.registry == "debian":
            _run(["apt-get", "download", f"{package.name}={package.version}"], folder)
        elif package.registry == "pypi":
            _run(
                ["pip", "download", "--no-deps", *package.pip_args, "-d", ".", f"{package.name}=={package.version}"],
                folder,
            )
        elif package.registry == "npm":
            _run(["npm", "pack", f"{package.name}@{package.version}"], folder)
        else:
            raise FetchError(f"{package.name}: unknown registry {package.registry!r}")
        found = sorted(folder.glob(package.archive))
    if not found:
        raise FetchError(f"{package.name} {package.version}: the download wrote no file matching {package.archive!r}")
    return found[-1]


def unpack(package: Package, archive: Path, members: list[str], extract: Path) -> Path:
    """Unpack the listed members of ``archive`` (a .deb: all of it) into ``extract/<slug>/``; returns that folder."""
    target = extract / package.slug
    if all((target / m).is_file() for m in members):
        return target
    target.mkdir(parents=True, exist_ok=True)
    name = archive.name
    if name.endswith(".deb"):
        _run(["dpkg-deb", "-x", str(archive.resolve()), str(target.resolve())], target)
    elif name.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            for member in members:
                z.extract(member, target)
    elif name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as t:
            for member in members:
                t.extract(member, target, filter="data")
    else:
        raise FetchError(f"{package.name}: do not know how to unpack {name}")
    return target


def _convert(source: Path, conversion: str | None, destination: Path) -> None:
    """Copy a selected file into place, byte for byte, or decode it first when the package stores raw pixels."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if conversion is None:
        shutil.copyfile(source, destination)
    elif conversion == "scipy_face_dat":  # scipy.misc.face(): bz2 of raw uint8 RGB, 768 x 1024
        pixels = np.frombuffer(bz2.decompress(source.read_bytes()), dtype=np.uint8).reshape(768, 1024, 3)
        Image.fromarray(pixels).save(destination)
    else:
        raise FetchError(f"unknown conversion {conversion!r} for {source}")


def write_pool_copy(photo: Path, destination: Path, side: int) -> None:
    """A training copy of ``photo``: shorter side at most ``side`` (Lanczos), RGB, JPEG quality 95."""
    with Image.open(photo) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
        scale = side / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        destination.parent.mkdir(parents=True, exist_ok=True)
        image.save(destination, quality=POOL_QUALITY)


def fetch_package(package: Package, entries: list[dict], out: Path, pool_side: int) -> int:
    """Download, unpack, check and place one package's selected files; returns how many were placed."""
    archive = download(package, out / "downloads")
    folder = unpack(package, archive, [e["inner_path"] for e in entries], out / "extract")
    problems = []
    for entry in entries:
        source = folder / entry["inner_path"]
        if not source.is_file():
            problems.append(f"  {entry['inner_path']}: not in the package any more")
            continue
        digest = sha256(source)
        if digest != entry["sha256"]:
            problems.append(f"  {entry['inner_path']}: sha256 {digest}, the manifest records {entry['sha256']}")
    if problems:
        raise FetchError(
            f"{package.name} {package.version} ({archive.name}) no longer matches the manifest:\n"
            + "\n".join(problems)
            + "\nLook at the new files, choose again, and update tools/training_data_manifest.json (and the model "
            "cards) before training on them."
        )
    for entry in entries:
        destination = out / entry["file"]
        if not destination.is_file():
            _convert(folder / entry["inner_path"], entry.get("convert"), destination)
        if entry["kind"] == "photo":
            pool = out / "pool" / Path(entry["file"]).relative_to("photos").with_suffix(".jpg")
            if not pool.is_file():
                write_pool_copy(destination, pool, pool_side)
    return len(entries)


def load_manifest(path: Path = MANIFEST) -> tuple[list[Package], dict[str, list[dict]]]:
    """The manifest's packages and, per package name, its selected files."""
    manifest = json.loads(path.read_text())
    packages = [
        Package(p["name"], p["registry"], p["version"], p["archive"], tuple(p.get("pip_args", ())))
        for p in manifest["packages"]
    ]
    entries: dict[str, list[dict]] = {p.name: [] for p in packages}
    for entry in manifest["files"]:
        entries[entry["package"]].append(entry)
    return packages, entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cache folder (git-ignored)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--only", nargs="+", metavar="PACKAGE", help="fetch only these packages")
    parser.add_argument("--pool-side", type=int, default=POOL_SIDE, help="shorter side of the training copies")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip a package that cannot be downloaded (a changed package still fails)",
    )
    args = parser.parse_args(argv)
    packages, entries = load_manifest(args.manifest)
    if args.only:
        unknown = sorted(set(args.only) - {p.name for p in packages})
        if unknown:
            parser.error(f"not in the manifest: {', '.join(unknown)}")
        packages = [p for p in packages if p.name in args.only]
    placed, skipped, failed = 0, [], []
    for package in packages:
        if not entries[package.name]:
            continue  # examined, nothing kept
        try:
            count = fetch_package(package, entries[package.name], args.out, args.pool_side)
        except FetchError as e:
            changed = "no longer matches" in str(e)
            (failed if changed or not args.allow_missing else skipped).append(str(e))
            continue
        placed += count
        print(f"{package.name} {package.version}: {count} file(s)")
    for message in skipped:
        print(f"skipped (unreachable): {message}", file=sys.stderr)
    for message in failed:
        print(f"error: {message}", file=sys.stderr)
    print(f"{placed} file(s) in {args.out} (photos/, pool/, clips/); {len(skipped)} skipped, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
