"""Image I/O: read frames, check stacks, write outputs atomically.

Every frame comes out as ``(H, W, 3) float32 in [0, 1]`` RGB (:class:`Frame`); headers are
checked (:func:`probe_image`, :func:`check_stack`) before any pixel is decoded; every output
goes through :func:`atomic_output` (temp file in the same folder, fsync, rename).

Readers: RAW (rawpy), TIFF (tifffile), PNG and JPEG (Pillow). Writers: TIFF 8/16-bit
(tifffile), PNG 8-bit (Pillow) and 16-bit (own encoder), JPEG 8-bit (Pillow).
"""

from focusstack.io.formats import (
    OUTPUT_EXTENSIONS,
    RAW_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    Frame,
    ImageInfo,
)
from focusstack.io.readers import probe_image, read_image
from focusstack.io.stack import check_stack, collect_stack, natural_sort
from focusstack.io.writers import (
    atomic_output,
    atomic_outputs,
    check_output,
    encode_image,
    output_bit_depth,
    write_files,
    write_image,
    write_images,
)

__all__ = [
    "OUTPUT_EXTENSIONS",
    "RAW_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "Frame",
    "ImageInfo",
    "atomic_output",
    "atomic_outputs",
    "check_output",
    "check_stack",
    "collect_stack",
    "encode_image",
    "natural_sort",
    "output_bit_depth",
    "probe_image",
    "read_image",
    "write_files",
    "write_image",
    "write_images",
]
