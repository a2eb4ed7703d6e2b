"""The vqtok web app (Gradio): tokenize and reconstruct images and videos, inspect the tokens, decode token files.

Start it with ``vqtok demo`` (needs ``pip install -e ".[app]"``); build it in Python with
:func:`app.app.create_demo`. The app uses only vqtok's public API (``vqtok.load``, ``encode``, ``decode``,
``vqtok.io``, ``vqtok.metrics``, ``vqtok.token_file``).
"""
