"""Training data: image folders, procedural dead-leaves images, and the LightningDataModule that serves them."""

from vqtok.training.data.datamodule import ImageDataModule
from vqtok.training.data.folder import ImageFolder, collate_images
from vqtok.training.data.procedural import ProceduralImages, render_dead_leaves

__all__ = ["ImageDataModule", "ImageFolder", "ProceduralImages", "collate_images", "render_dead_leaves"]
