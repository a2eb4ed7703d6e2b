"""File I/O for vqtok's public API and training: ``images`` (decode to float RGB, write back) and ``atomic``."""
