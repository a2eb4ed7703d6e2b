"""File I/O for vqtok's public API and training: decoding images to float RGB and writing them back."""

from vqtok.io.images import (
    DEFAULT_MAX_PIXELS,
    array_to_pil,
    image_extensions,
    list_images,
    pil_to_array,
    read_image,
    save_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "array_to_pil",
    "image_extensions",
    "list_images",
    "pil_to_array",
    "read_image",
    "save_image",
]
