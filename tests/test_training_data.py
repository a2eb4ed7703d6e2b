"""Training data: procedural dead leaves, image folders with broken files, batching, and the data module."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vqtok.errors import ConfigError
from vqtok.training.data import ImageDataModule, ImageFolder, ProceduralImages, collate_images, render_dead_leaves
from vqtok.training.data.sampling import KeyedSampler, SampleKey


def make_folder(root: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Noise images of the given (width, height), as PNG files under ``root``."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = root / f"sub{i % 2}" / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


# --- procedural --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 32, 65])
def test_render_dead_leaves_shape_and_dtype(size):
    image = render_dead_leaves(np.random.default_rng(0), size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8 and image.flags.writeable


def test_render_dead_leaves_has_natural_looking_content():
    for i in range(4):
        image = render_dead_leaves(np.random.default_rng(i), 64)
        assert image.std() > 15  # not flat
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 200  # many colours: edges, textures
        assert np.abs(np.diff(image.astype(int), axis=1)).mean() > 2  # edges, not a smooth field


def test_procedural_images_are_deterministic_by_seed_and_index():
    a, b = ProceduralImages(10, 32, seed=3), ProceduralImages(10, 32, seed=3)
    torch.testing.assert_close(a[4], b[4], rtol=0, atol=0)
    torch.testing.assert_close(a[4], a[4], rtol=0, atol=0)
    assert not torch.equal(a[4], a[5])
    assert not torch.equal(a[4], ProceduralImages(10, 32, seed=4)[4])
    assert not torch.equal(a[4], ProceduralImages(10, 32, seed=3, stream=1)[4])


def test_procedural_images_range_and_layout():
    x = ProceduralImages(3, 24)[2]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.max() - x.min() > 0.5
    with pytest.raises(IndexError):
        ProceduralImages(3, 24)[3]
    with pytest.raises(ConfigError):
        ProceduralImages(0, 24)


def test_procedural_images_do_not_depend_on_the_worker():
    data = ProceduralImages(6, 16, seed=1)
    in_process = torch.cat([b["images"] for b in DataLoader(data, batch_size=2, collate_fn=collate_images)])
    loader = DataLoader(data, batch_size=2, collate_fn=collate_images, num_workers=2)
    in_workers = torch.cat([b["images"] for b in loader])
    torch.testing.assert_close(in_process, in_workers, rtol=0, atol=0)


# --- folders and batching ----------------------------------------------------------------------------------


def test_image_folder_crops_and_flips(tmp_path):
    make_folder(tmp_path, [(40, 30), (10, 50), (8, 8)])  # larger, tall and smaller than S
    data = ImageFolder(str(tmp_path), 16, train=True)
    assert len(data) == 3
    for i in range(3):
        x = data[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    first = data[SampleKey(0, 7)]
    torch.manual_seed(123)  # the global generator plays no part: the key's seed decides the crop
    torch.testing.assert_close(data[SampleKey(0, 7)], first, rtol=0, atol=0)
    crops = {tuple(data[SampleKey(0, seed)].flatten()[:8].tolist()) for seed in range(8)}
    assert len(crops) > 1


def test_image_folder_eval_is_a_deterministic_centre_crop(tmp_path):
    path = make_folder(tmp_path, [(32, 16)])[0]
    data = ImageFolder(str(tmp_path), 16, train=False)
    x = data[0]
    torch.testing.assert_close(data[0], x, rtol=0, atol=0)
    pixels = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(x, pixels[:, :, 8:24], rtol=0, atol=1e-5)  # shorter side == S: no resize


def test_corrupt_file_gives_none_and_is_counted(tmp_path, caplog):
    make_folder(tmp_path, [(20, 20), (20, 20)])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    data = ImageFolder(str(tmp_path), 16)
    broken = data.files.index(tmp_path / "broken.png")
    with caplog.at_level(logging.WARNING):
        assert data[broken] is None
    assert "broken.png" in caplog.text and "not an image" in caplog.text
    batch = collate_images([data[i] for i in range(len(data))])
    assert batch["images"].shape == (2, 3, 16, 16) and batch["num_failed"] == 1


def test_collate_when_everything_failed():
    batch = collate_images([None, None])
    assert batch["images"].numel() == 0 and batch["num_failed"] == 2


def test_image_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        ImageFolder(str(tmp_path), 16)


# --- data module -------------------------------------------------------------------------------------------


def test_procedural_data_module():
    dm = ImageDataModule(image_size=32, batch_size=4, num_workers=0, train_samples=8, val_samples=6)
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == 2
    assert train[0]["images"].shape == (4, 3, 32, 32) and train[0]["num_failed"] == 0
    val = list(dm.val_dataloader())
    assert [b["images"].shape[0] for b in val] == [4, 2]  # validation keeps the last partial batch
    train_images = torch.cat([b["images"] for b in train])
    assert not any(torch.equal(v, t) for v in val[0]["images"] for t in train_images)  # separate streams
    assert len(list(dm.test_dataloader())) == len(list(dm.predict_dataloader())) == 2
    assert dm.hparams["root"] is None and dm.hparams["image_size"] == 32


def test_folder_data_module(tmp_path):
    make_folder(tmp_path, [(24, 20)] * 9)
    dm = ImageDataModule(root=str(tmp_path), image_size=16, batch_size=4, num_workers=0, val_fraction=0.2)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (7, 2)
    assert set(dm.train_set.files).isdisjoint(dm.val_set.files)
    again = ImageDataModule(root=str(tmp_path), image_size=16, batch_size=4, num_workers=0, val_fraction=0.2)
    again.setup("fit")
    assert again.val_set.files == dm.val_set.files  # the split is deterministic
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and batches[0]["images"].shape == (4, 3, 16, 16)
    assert next(iter(dm.val_dataloader()))["images"].shape == (2, 3, 16, 16)


def test_data_module_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        ImageDataModule(root=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="data.batch_size"):
        ImageDataModule(batch_size=0)
    make_folder(tmp_path, [(8, 8)])
    with pytest.raises(ConfigError, match="at least 2"):
        ImageDataModule(root=str(tmp_path), num_workers=0).setup("fit")


def test_procedural_images_of_every_small_size_render():
    """Sprites of procedural clips are rendered on tiny canvases, where the smallest radius must shrink with the
    canvas (a fixed one larger than the canvas made the shape count negative)."""
    for size in (1, 2, 3, 5, 8, 13, 24, 40):
        for seed in range(6):
            image = render_dead_leaves(np.random.default_rng([seed, size]), size)
            assert image.shape == (size, size, 3) and image.dtype == np.uint8


# --- order and resume ---------------------------------------------------------------------------------------


def test_keyed_sampler_orders_are_functions_of_seed_and_epoch_and_shard_across_ranks():
    def order(seed: int, epoch: int, rank: int = 0, replicas: int = 1) -> list[SampleKey]:
        sampler = KeyedSampler(10, seed, num_replicas=replicas, rank=rank)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 0) == order(0, 0)
    assert sorted(k.index for k in order(0, 0)) == list(range(10))
    assert [k.index for k in order(0, 0)] != [k.index for k in order(0, 1)]  # reshuffled every epoch
    assert [k.index for k in order(0, 0)] != [k.index for k in order(1, 0)]
    seeds = {k.index: k.seed for k in order(0, 0)}
    assert all(seeds[k.index] != k.seed for k in order(0, 1))  # a new augmentation every epoch
    shards = [order(0, 3, rank, 3) for rank in range(3)]  # 10 items on 3 ranks: 4 each, 2 repeated
    assert {k.index for shard in shards for k in shard} == set(range(10)) and all(len(s) == 4 for s in shards)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_loader_restored_mid_epoch_goes_on_with_the_same_batches(tmp_path, num_workers):
    make_folder(tmp_path, [(40, 30)] * 12)
    kwargs = {"root": str(tmp_path), "image_size": 16, "batch_size": 2, "num_workers": num_workers, "seed": 3}
    dm = ImageDataModule(val_fraction=0.1, **kwargs)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(4)
    whole = [b["images"] for b in loader]
    assert len(whole) == 5  # 11 training images in batches of 2, the last incomplete one dropped

    loader = ImageDataModule(val_fraction=0.1, **kwargs).train_dataloader()
    loader.sampler.set_epoch(4)
    batches = iter(loader)
    seen = [next(batches)["images"] for _ in range(2)]
    state = loader.state_dict()  # what Lightning puts in a checkpoint

    resumed = ImageDataModule(val_fraction=0.1, **kwargs).train_dataloader()
    resumed.load_state_dict(state)
    batches = iter(resumed)  # Lightning builds the iterator, then sets the epoch, then draws
    resumed.sampler.set_epoch(4)
    rest = [b["images"] for b in batches]
    assert len(seen) + len(rest) == len(whole)
    for got, expected in zip(seen + rest, whole):
        assert torch.equal(got, expected)  # the same images, in the same order, with the same crops


# --- real photos mixed with procedural images ----------------------------------------------------------------


def ramp_image(height: int, width: int) -> torch.Tensor:
    """(3, H, W) in [0, 1]: channel 0 is the column / (W - 1), channel 1 the row / (H - 1), channel 2 constant."""
    cols = torch.arange(width, dtype=torch.float32) / (width - 1)
    rows = torch.arange(height, dtype=torch.float32) / (height - 1)
    return torch.stack(
        [cols.expand(height, width), rows[:, None].expand(height, width), torch.full((height, width), 0.5)]
    )


def test_random_view_scales_and_positions_stay_in_range():
    from vqtok.training.data.photos import random_view

    size, height, width = 32, 150, 240
    sides = []
    for seed in range(60):
        y = random_view(ramp_image(height, width), size, 0.0, torch.Generator().manual_seed(seed))
        assert y.shape == (3, size, size) and y.dtype == torch.float32
        # On a linear ramp the resized crop is linear too: its slope gives the side cut out, its offset the corner.
        j1, j2 = 4, size - 5
        side_x = abs(float(y[0, size // 2, j2] - y[0, size // 2, j1])) * (width - 1) * size / (j2 - j1)
        side_y = abs(float(y[1, j2, size // 2] - y[1, j1, size // 2])) * (height - 1) * size / (j2 - j1)
        assert side_x == pytest.approx(side_y, abs=1.0)  # square
        assert size - 1 <= side_x <= min(height, width) + 1
        top = float(y[1, j1, 0]) * (height - 1) - (j1 + 0.5) * side_y / size + 0.5
        assert top >= -1 and top + side_y <= height + 1
        sides.append(side_x)
    assert min(sides) < 2 * size and max(sides) > 0.6 * height  # native detail and zoomed-out views both occur


@pytest.mark.parametrize("shape", [(20, 12), (32, 32), (31, 500), (700, 45)])
def test_random_view_takes_any_image_size(shape):
    from vqtok.training.data.photos import random_view

    y = random_view(torch.rand(3, *shape), 32, 0.1, torch.Generator().manual_seed(0))
    assert y.shape == (3, 32, 32) and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_colour_jitter_stays_within_its_range():
    from vqtok.training.data.photos import random_view

    grey = torch.full((3, 64, 64), 0.5)  # contrast and saturation leave flat grey alone: only brightness moves it
    levels = [float(random_view(grey, 16, 0.1, torch.Generator().manual_seed(s)).mean()) for s in range(40)]
    assert all(0.45 - 1e-6 <= v <= 0.55 + 1e-6 for v in levels)
    assert max(levels) - min(levels) > 0.05
    plain = random_view(grey, 16, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(plain, grey[:, :16, :16])


@pytest.mark.parametrize("fraction", [0.0, 0.25, 1 / 3, 0.75, 1.0])
def test_the_real_share_is_exact_in_every_stretch_of_items(fraction):
    from vqtok.training.data.photos import is_real

    flags = [is_real(i, fraction) for i in range(1000)]
    for start, stop in [(0, 1000), (0, 7), (100, 400), (993, 1000)]:
        assert abs(sum(flags[start:stop]) - fraction * (stop - start)) < 1.0


def photo_module(tmp_path: Path, **kwargs) -> ImageDataModule:
    make_folder(tmp_path / "photos", [(48, 40), (100, 30), (20, 20), (64, 64), (50, 90)] * 2)
    options = dict(photos=str(tmp_path / "photos"), image_size=16, batch_size=4, num_workers=0, train_samples=40)
    options.update(val_samples=3, val_fraction=0.2, real_fraction=0.75)
    return ImageDataModule(**(options | kwargs))


def test_mixed_data_module_serves_the_real_share_and_deterministic_views(tmp_path):
    from vqtok.training.data.photos import MixedImages, PhotoCrops

    dm = photo_module(tmp_path)
    dm.setup("fit")
    assert isinstance(dm.train_set, MixedImages) and len(dm.train_set) == 40
    assert len(dm.train_set.photos) == 8 and len(dm.val_set) == 3 + 2  # procedural validation, then 2 photos
    procedural = ProceduralImages(40, 16, 0, 0)
    keys = list(KeyedSampler(40, seed=0))
    real = [k for k in keys if not torch.equal(dm.train_set[k], procedural[k.index])]
    assert len(real) == 30  # 75% of the epoch, exactly
    torch.manual_seed(123)  # the global generator plays no part
    again = photo_module(tmp_path)
    again.setup("fit")
    for key in keys[:8]:
        assert torch.equal(dm.train_set[key], again.train_set[key])
    view = dm.train_set.photos[SampleKey(0, 1)]
    assert view.shape == (3, 16, 16) and float(view.min()) >= -1.0 and float(view.max()) <= 1.0
    assert not torch.equal(view, dm.train_set.photos[SampleKey(0, 2)])  # another draw, another view
    assert torch.equal(dm.train_set.photos[0], dm.train_set.photos[0])  # evaluation view
    batches = list(dm.train_dataloader())
    assert len(batches) == 10 and batches[0]["images"].shape == (4, 3, 16, 16)
    assert [b["images"].shape[0] for b in dm.val_dataloader()] == [4, 1]
    assert isinstance(PhotoCrops(dm.train_set.photos.files, 16)[SampleKey(3, 9)], torch.Tensor)


def test_mixed_data_module_errors(tmp_path):
    with pytest.raises(ConfigError, match="both set"):
        ImageDataModule(root=str(tmp_path), photos=str(tmp_path))
    with pytest.raises(ConfigError, match="data.real_fraction"):
        ImageDataModule(photos=str(tmp_path), real_fraction=1.5)
    with pytest.raises(ConfigError, match="data.colour_jitter"):
        ImageDataModule(photos=str(tmp_path), colour_jitter=-0.1)
    missing = ImageDataModule(photos=str(tmp_path / "pool"), num_workers=0)  # parses: checked at setup
    with pytest.raises(ConfigError, match="tools.fetch_training_data"):
        missing.setup("fit")
