"""The Generate tab: draw token grids from a prior export (``vqtok prior export``) and decode them with the tokenizer
the prior was trained on (found among the app's models by fingerprint), with a progress bar for both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from vqtok import VqtokError
from vqtok.inputs import to_uint8
from vqtok.token_file import TokenItem, save_tokens

from .limits import Limits
from .models import ModelRegistry
from .priors import PriorRegistry
from .uploads import plain
from .workspace import Workspace, as_outputs

UNCONDITIONAL = "(any class)"


@dataclass(frozen=True)
class GenerateResult:
    """Field order = the event's outputs."""

    images: list[tuple[Path, str]]  # decoded samples (PNG) with captions
    tokens: Path  # the sampled ids as a token file (the Decode tab and `vqtok decode` read it)
    summary: str  # Markdown: which prior, tokenizer and settings


@dataclass(frozen=True)
class SampleSettings:
    """What the user chose; ``class_name`` None: unconditional."""

    prior: str
    class_name: str | None
    n: int
    cfg: float
    temperature: float
    top_k: int | None
    seed: int


def generate(
    settings: SampleSettings,
    priors: PriorRegistry,
    models: ModelRegistry,
    limits: Limits,
    workspace: Workspace,
    progress: gr.Progress,
) -> GenerateResult:
    """Sample ``settings.n`` grids and decode them; every refusal is a ``gr.Error`` that says why."""
    if settings.n < 1 or settings.n > limits.max_generate:
        raise _refuse(f"Ask for 1 to {limits.max_generate} samples (this app's limit), not {settings.n}.")
    try:
        prior = priors.get(settings.prior)
    except VqtokError as e:
        raise _refuse(str(e)) from None
    name = models.by_fingerprint(prior.tokenizer_fingerprint)
    if name is None:
        raise _refuse(
            f"The prior {settings.prior!r} generates the ids of the tokenizer {prior.tokenizer!r} (fingerprint "
            f"{prior.tokenizer_fingerprint}), which this app does not have; its models are "
            f"{', '.join(models.names())}. Start the app with that tokenizer (--image-model)."
        )
    tok = models.get(name)
    total = 0

    def sampled(done: int, of: int) -> None:
        nonlocal total
        total = of
        progress((done, of), desc="Sampling", unit="steps")

    try:
        ids = prior.sample(
            settings.n,
            class_name=settings.class_name,
            seed=settings.seed,
            cfg_scale=settings.cfg if settings.class_name else 1.0,
            temperature=settings.temperature,
            top_k=settings.top_k,
            progress=sampled,
        )  # int64 (n, h, w) or (n, t, h, w)
    except VqtokError as e:  # an unknown class, a bad setting
        raise _refuse(str(e)) from None
    out = workspace.new_dir()
    images, items = [], []
    caption = settings.class_name or "unconditional"
    what = f"of class **{plain(settings.class_name)}**" if settings.class_name else "(unconditional)"
    for k in progress.tqdm(range(settings.n), desc="Decoding"):
        x = tok.decode(ids[k : k + 1])  # (1, 3, H, W), or (1, 3, T, H, W) for a video prior
        frame = x[0] if x.dim() == 4 else x[0, :, 0]  # a video's first frame
        images.append((Workspace.save_png(out, f"sample_{k:02d}", to_uint8(frame)), f"{caption} #{k}"))
        items.append(TokenItem(ids[k].cpu(), tuple(x.shape[2:]), f"sample_{k:02d}", None if x.dim() == 4 else 8.0))
    tokens = out / "samples.safetensors"
    save_tokens(tokens, items, tok.config.name, tok.fingerprint, tok.codebook_size)
    top_k = settings.top_k or "off"
    summary = (
        f"{settings.n} sample(s) {what} from the prior **{plain(settings.prior)}** "
        f"({prior.model.config.objective}, grid {' x '.join(map(str, ids.shape[1:]))}, {total} sampling steps), "
        f"decoded with **{name}**; CFG {settings.cfg if settings.class_name else 1.0}, temperature "
        f"{settings.temperature}, top-k {top_k}, seed {settings.seed}."
    )
    return GenerateResult(images, tokens, summary)


def _refuse(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def class_choices(priors: PriorRegistry, name: str | None) -> list[str]:
    """The class menu of prior ``name``: unconditional first, then its classes."""
    if not name or name not in priors.names():
        return [UNCONDITIONAL]
    return [UNCONDITIONAL, *priors.get(name).classes]


def build_generate_tab(priors: PriorRegistry, models: ModelRegistry, limits: Limits, workspace: Workspace) -> None:
    """Lay out the tab inside the current ``gr.Blocks`` and wire its events (API name ``/generate``)."""
    gr.Markdown(
        "Draw new token grids from a prior trained on a token store (`vqtok prior fit`, then `vqtok prior export`) "
        "and decode them with the tokenizer it was trained on. Classifier-free guidance (CFG) applies when a class "
        "is chosen."
    )
    first = priors.names()[0]
    with gr.Row():
        prior = gr.Dropdown(priors.names(), value=first, label="Prior")
        # custom values: the menu follows the chosen prior, and generate() refuses a class the prior lacks
        klass = gr.Dropdown(class_choices(priors, first), value=UNCONDITIONAL, label="Class", allow_custom_value=True)
        n = gr.Slider(1, limits.max_generate, value=min(8, limits.max_generate), step=1, label="Samples")
    with gr.Row():
        cfg = gr.Slider(1.0, 8.0, value=4.0, step=0.5, label="CFG scale")  # the demo's settings (bench/prior_demo.py)
        temperature = gr.Slider(0.1, 2.0, value=0.8, step=0.05, label="Temperature")
        top_k = gr.Number(value=32, precision=0, minimum=0, label="Top-k (0: off)")
        seed = gr.Number(value=0, precision=0, label="Seed")
    button = gr.Button("Generate", variant="primary", elem_id="generate-button")
    summary = gr.Markdown(elem_id="generate-summary")
    images = gr.Gallery(label="Samples", format="png", columns=8, height=360, elem_id="generated")
    tokens = gr.File(label="Sampled ids (token file)", interactive=False)

    def pick_prior(name: str) -> gr.Dropdown:
        return gr.Dropdown(choices=class_choices(priors, name), value=UNCONDITIONAL, allow_custom_value=True)

    def run_generate(
        prior_name: str,
        class_name: str,
        count: float,
        cfg_scale: float,
        temp: float,
        k: float | None,
        seed_value: float | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - injected by Gradio
    ) -> tuple:
        settings = SampleSettings(
            prior=prior_name,
            class_name=None if class_name in (None, "", UNCONDITIONAL) else class_name,
            n=int(count),
            cfg=float(cfg_scale),
            temperature=float(temp),
            top_k=int(k) if k else None,
            seed=int(seed_value or 0),
        )
        return as_outputs(generate(settings, priors, models, limits, workspace, progress))

    prior.change(pick_prior, inputs=prior, outputs=klass, api_name=False)
    button.click(
        run_generate,
        inputs=[prior, klass, n, cfg, temperature, top_k, seed],
        outputs=[images, tokens, summary],
        api_name="generate",
        concurrency_id="model",
    )
