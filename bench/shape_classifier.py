"""A small CNN that names the class of a procedural shape image (disc, square, triangle, stripes), trained on
freshly rendered images only: the judge of the prior demo's samples (``bench/prior_demo.py``)."""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqtok.prior_training.shapes import CLASSES, render_shape


def rendered(n: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` images per class rendered with ``seed``: float32 (4n, 3, size, size) in [-1, 1] and int64 (4n,) labels
    (indices into :data:`CLASSES`)."""
    images, labels = [], []
    for c, kind in enumerate(CLASSES):
        for i in range(n):
            images.append(np.asarray(render_shape(kind, size, np.random.default_rng([seed, c, i]))))
            labels.append(c)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (4n, 3, H, W)
    return x, torch.tensor(labels)


class ShapeClassifier(nn.Module):
    """Four 3x3 conv layers (the first three each followed by 2x2 max pooling), global average and max pooling,
    a linear layer: (B, 3, H, W) in [-1, 1] -> (B, 4) logits, at 32x32.

    Each image is standardised per channel first, so the random colours carry no class information."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(itertools.pairwise(chans)):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
            if k < len(chans) - 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * chans[-1], len(CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(x, 32)  # (B, 3, 32, 32): enough for one large shape, and 4x cheaper
        x = (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 0.05)
        h = self.features(x)  # (B, C, 4, 4)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1))


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random flips, grey and washed-out versions, a random blur (3x3 box) and a little noise, each for half the
    images: robust to a decoder's softness and lost colour, never shown a decoded image."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    grey = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(grey[:, None, None, None], x.mean(1, keepdim=True).expand_as(x), x)
    contrast = 0.3 + 0.7 * torch.rand(x.shape[0], 1, 1, 1, generator=generator)  # (B, 1, 1, 1)
    x = x.mean((1, 2, 3), keepdim=True) + contrast * (x - x.mean((1, 2, 3), keepdim=True))
    blur = torch.rand(x.shape[0], generator=generator) < 0.5
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur[:, None, None, None], soft, x)
    return x + 0.03 * torch.randn(x.shape, generator=generator)


def train_classifier(x: Tensor, y: Tensor, epochs: int = 10, batch_size: int = 64, seed: int = 0) -> ShapeClassifier:
    """Train a :class:`ShapeClassifier` on images x (N, 3, H, W) in [-1, 1] with labels y (N,)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ShapeClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(augment(x[idx], generator)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: ShapeClassifier, x: Tensor, batch_size: int = 256) -> Tensor:
    """int64 (N,): the predicted class index (into :data:`CLASSES`) of each image x (N, 3, H, W) in [-1, 1]."""
    return torch.cat([model(x[i : i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])
