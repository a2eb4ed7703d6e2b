"""The vqtok web app (Gradio): tokenize and reconstruct images and videos, inspect the tokens, decode token files.

Start it with ``vqtok demo`` (needs ``pip install -e ".[app]"``); build it in Python with
:func:`app.app.create_demo`. The package is installed as ``vqtok.app`` (pyproject's package-dir), which is how
``vqtok demo`` imports it; in a checkout it is also ``app`` (the tests' import path), so modules here import each
other relatively. The app uses only vqtok's public API (``vqtok.load``, ``encode``, ``decode``, the errors,
``vqtok.resolve_export``/``export_fingerprints``, ``vqtok.inputs``, ``vqtok.io``, ``vqtok.metrics``,
``vqtok.token_file``, ``vqtok.allocator``, and ``vqtok.synthetic`` for the examples).
"""
