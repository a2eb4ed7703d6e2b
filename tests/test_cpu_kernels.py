"""The tests whose figures depend on floating-point kernels, run again under the AVX2 kernels.

oneDNN and ATen pick their kernels by CPU: on an AVX-512/AMX machine convolutions and matmuls sum in another order
than on an AVX2 one, and a test that compares floats across two code paths (a resumed run against an uninterrupted
one, a fast path against the plain formulation, shipped ids against fixed figures) may hold on one kind only. CI
runs on whichever kind it gets; this slow test runs those tests limited to AVX2 kernels on any x86 machine, so both
kernel sets are checked wherever CI lands (the default run checks the machine's own).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from faults import REPO

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
# Each compares floats between two computations or against measured floors.
NUMERICS_SENSITIVE = [
    "tests/test_faults.py::test_kill_9_during_training_then_resume_continues_the_loss_curve_exactly",
    "tests/test_fast_paths.py",
    "tests/test_quantizer.py",
    "tests/test_row_bands.py",
    "tests/test_onnx_video_memory.py",
    "tests/test_shipped.py",
    "tests/test_video_model.py",
    "tests/test_training.py",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AVX2 kernels exist on x86 only"),
]


def test_the_avx2_limit_takes_effect():
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **AVX2}, capture_output=True, text=True)
    assert out.stdout.strip() == "AVX2", out.stderr


def test_numerics_sensitive_tests_pass_under_avx2_kernels():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NUMERICS_SENSITIVE],
        cwd=REPO,
        env={**os.environ, **AVX2},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
