"""DeiT's bicubic resize of uint8 images: one in a CPU worker, or a batch of crops on the device.

What this room holds: :func:`resize_uint8` (one H×W×3 uint8 array → a
3×h×w uint8 tensor, in the worker) and :func:`resize_crops` (a batch of
crops packed in one buffer by :func:`deit.data.packing.pack_crops` → the
B×3×S×S uint8 batch, resized on whatever device the buffer is on).

The filter is Pillow's antialiased bicubic (``Image.resize(..., BICUBIC)``,
a = -0.5, support widened by the downscale factor), as torch's
``interpolate(mode="bicubic", antialias=True)`` implements it. On the CPU the
uint8 kernel is used (integer weights: the same bits on every run; 3.4×
faster than Pillow on ~270 px crops to 224). It rounds and clips between its
two passes otherwise than Pillow: on photo-like images the mean difference
is a few hundredths of a grey level, on random noise single pixels differ by
up to ~25 where overshoots clip. A device resizes in float32 (CUDA has no
uint8 kernel), then rounds: a tenth of a grey level from the CPU's result on
average, and the same bits on every run on the same device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["resize_crops", "resize_uint8"]


def resize_uint8(image: np.ndarray, width: int, height: int) -> torch.Tensor:
    """A uint8 H×W×3 array resized to ``width``×``height``: a contiguous uint8 tensor 3×h×w.

    Antialiased bicubic (Pillow's filter); an image already at that size is
    only transposed. The result never shares memory with ``image``.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if x.shape[1:] != (height, width):
        x = F.interpolate(x[None], (height, width), mode="bicubic", antialias=True)[0]
        return x.contiguous()
    return x.clone(memory_format=torch.contiguous_format)


def resize_crops(flat: torch.Tensor, shapes: torch.Tensor, size: int) -> torch.Tensor:
    """A buffer of packed crops → every crop resized to ``size``×``size``: uint8 B×3×S×S.

    On ``flat``'s device (a GPU: the workers only decode and crop), in
    float32, antialiased bicubic, rounded and clamped; contiguous. One
    ``interpolate`` per crop (the crops differ in size), the conversions once
    for the batch; ``shapes`` may be on any device.
    """
    pixels = flat.float()
    out, start = [], 0
    for height, width in shapes.tolist():
        stop = start + height * width * 3
        crop = pixels[start:stop].view(1, height, width, 3).permute(0, 3, 1, 2)
        if (height, width) != (size, size):
            crop = F.interpolate(crop, (size, size), mode="bicubic", antialias=True)
        out.append(crop)
        start = stop
    batch = torch.cat(out).round_().clamp_(0, 255)
    return batch.to(torch.uint8, memory_format=torch.contiguous_format)
