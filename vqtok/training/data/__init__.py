"""Training data: image and video folders, procedural images and clips, camera moves over photos, and the
LightningDataModules that serve them. (The video folder needs PyAV: import it from
:mod:`vqtok.training.data.video_folder`.)"""

from vqtok.training.data.camera_moves import CameraMotion, CameraMoves
from vqtok.training.data.datamodule import ImageDataModule
from vqtok.training.data.folder import ImageFolder, collate_images
from vqtok.training.data.procedural import ProceduralImages, render_dead_leaves
from vqtok.training.data.procedural_video import ProceduralVideos
from vqtok.training.data.video_datamodule import VideoDataModule, collate_mixed

__all__ = [
    "CameraMotion",
    "CameraMoves",
    "ImageDataModule",
    "ImageFolder",
    "ProceduralImages",
    "ProceduralVideos",
    "VideoDataModule",
    "collate_images",
    "collate_mixed",
    "render_dead_leaves",
]
