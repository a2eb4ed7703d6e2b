"""Fixtures shared by the test modules: the small shipped tokenizers, and a single torch thread for the modules
that make thousands of tiny calls.

The default run (``python -m pytest``) leaves out tests marked ``slow`` (the heavy fuzzing corpora, the load test
and the numerics re-run under AVX2 kernels); ``python -m pytest -m slow`` runs them. CI runs both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import vqtok


@pytest.fixture(scope="session")
def image_tok() -> vqtok.Tokenizer:
    """The shipped smoke image tokenizer: f8, 512 codes."""
    return vqtok.load("tiny")


@pytest.fixture(scope="session")
def video_tok() -> vqtok.Tokenizer:
    """The shipped smoke video tokenizer: 4x8x8, 512 codes."""
    return vqtok.load("video_tiny")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For modules of thousands of tiny calls: on 2 busy cores torch's thread pool costs more than it gives (up to
    10-20x here). Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
