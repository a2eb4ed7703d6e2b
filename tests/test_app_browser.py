"""The app in a real browser: ``vqtok demo`` is started as a user starts it (shipped checkpoints), headless
Chromium (Debian's) driven by Playwright opens the page, uploads an image, waits for the reconstruction and checks
the figures on the page; a screenshot is saved in the test's folder.

Skipped where Chromium or Playwright is missing, unless VQTOK_REQUIRE_BROWSER=1 (CI sets it), which makes a
missing browser a failure instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")

EXAMPLES = Path(__file__).resolve().parent.parent / "app" / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that work in a root sandbox without a GPU or network (see ../shared/NOTES.md).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        return "chromium is not installed (apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    """``vqtok demo`` as a user starts it: the shipped checkpoints, bound to 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio")), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (tmp_path_factory.mktemp("demo") / "demo.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vqtok.cli.main", "demo", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, Path(log.name).read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(demo_url, tmp_path_factory):
    missing = _browser_missing()
    if missing:
        if os.environ.get("VQTOK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VQTOK_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1800},
        )
        page = browser.new_page()
        page.set_default_timeout(120_000)
        page.goto(demo_url)
        yield page
        browser.close()


def test_upload_an_image_and_see_the_reconstruction_and_figures(page, tmp_path):
    pixels = np.asarray(Image.open(EXAMPLES / "dead_leaves_7.png").convert("RGB"))
    upload = tmp_path / "leaves.png"
    Image.fromarray(pixels[:96, :128]).save(upload)

    page.get_by_text("Tokenize and reconstruct").first.wait_for()
    page.locator("input[type=file]").first.set_input_files(str(upload))  # the Image tab's upload area

    table = page.locator("#figures table")
    table.wait_for()  # the figures arrive with the reconstruction
    text = table.inner_text()
    expected = [
        ("Model", "image"),  # the shipped default comes first in the menu
        ("Input size", "96 x 128"),
        ("Token grid", "12 x 16"),
        ("Tokens", "192"),
        ("Codebook size", "16,384"),
        ("Bits per pixel", "0.2188"),
        ("Compression vs raw RGB (24 bpp)", "109.7x"),
    ]
    for label, value in expected:
        assert f"{label}\t{value}" in text, (label, value, text)
    for label in ("Distinct codes used", "PSNR", "SSIM", "Encode time", "Decode time", "Compression vs uploaded file"):
        assert label in text

    def natural_size(elem_id: str) -> tuple[int, int]:
        img = page.locator(f"#{elem_id} img")
        img.wait_for()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
        return img.evaluate("i => [i.naturalWidth, i.naturalHeight]")

    assert natural_size("reconstruction") == [128, 96]  # decoded by the browser, at the input's size
    assert natural_size("encoded") == [128, 96] and natural_size("error-heatmap") == [128, 96]
    assert natural_size("token-grid")[0] > 0 and natural_size("code-usage")[0] > 0
    psnr = float(text.split("PSNR\t")[1].split(" dB")[0])
    assert psnr > 16, f"the shipped image tokenizer gets 18.5 dB here (random weights about 11 dB), got {psnr} dB"

    shot = tmp_path / "app_image_tab.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


@pytest.mark.skipif(
    not (EXAMPLES.parent.parent / "checkpoints" / "priors").is_dir(), reason="no shipped prior (checkpoints/priors/)"
)
def test_generate_samples_from_the_shipped_prior_and_see_them_decoded(page, tmp_path):
    page.get_by_role("tab", name="Generate").click()
    page.locator("#generate-button").click()  # the defaults: 8 unconditional samples of the first prior
    images = page.locator("#generated img")
    images.nth(7).wait_for()
    for k in range(8):
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=images.nth(k).element_handle())
    assert images.nth(0).evaluate("i => [i.naturalWidth, i.naturalHeight]") == [64, 64]  # 8x8 ids of tiny, decoded
    summary = page.locator("#generate-summary").inner_text()
    assert "8 sample(s)" in summary and "decoded with tiny" in summary
    shot = tmp_path / "app_generate_tab.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
