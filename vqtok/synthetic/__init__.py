"""Synthetic images and clips, rendered from a seed: a data source that needs no files and no downloads.

The training data sets (:mod:`vqtok.training.data`), the app's examples, the tests and the benchmarks draw from
here. numpy, torch and PIL only: importing this needs neither Lightning nor PyAV.
"""

from vqtok.synthetic.dead_leaves import render_dead_leaves
from vqtok.synthetic.video import procedural_video_frames, render_procedural_video

__all__ = ["procedural_video_frames", "render_dead_leaves", "render_procedural_video"]
