"""Augmentation for top-down imagery, with torchvision.transforms.v2.

Seen from above, a field has no "up": flips and 90-degree rotations are free, exact label-keeping
augmentations. Light changes with sun and cloud (brightness/contrast) and flying height changes
scale (a centred zoom of +-20 %, which keeps the labeled central cell at the centre). Works on
uint8 tensors of any band count (C x H x W or N x C x H x W); unlike ``v2.ColorJitter`` the
brightness/contrast step does not assume RGB, so it serves red+NIR too.

Training only (it imports torch), so it lives in ``models``: ``datasets`` needs no torch.
"""

from __future__ import annotations

from typing import Any

import torch
from khet.models import compat  # noqa: F401  (torchvision op schemas before torchvision)

# isort: split
from torchvision.transforms import v2


class RandomRot90(v2.Transform):
    """Rotate by 0, 90, 180 or 270 degrees, uniformly."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return torch.rot90(inpt, params["k"], dims=(-2, -1)) if params["k"] else inpt


class BandJitter(v2.Transform):
    """Brightness (gain) and contrast (spread around the tile mean) for any number of bands."""

    def __init__(self, brightness: float = 0.25, contrast: float = 0.25) -> None:
        super().__init__()
        self.brightness = brightness
        self.contrast = contrast

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        b = 1.0 + (torch.rand(()).item() * 2 - 1) * self.brightness
        c = 1.0 + (torch.rand(()).item() * 2 - 1) * self.contrast
        return {"b": b, "c": c}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = inpt.float()
        mean = x.mean(dim=(-3, -2, -1), keepdim=True)
        x = (mean + (x - mean) * params["c"]) * params["b"]
        return x.clamp_(0, 255).to(inpt.dtype) if not inpt.is_floating_point() else x


def train_transform(
    scale: tuple[float, float] = (0.8, 1.25), brightness: float = 0.25, contrast: float = 0.25
) -> v2.Compose:
    """The training augmentation for one tile (C x H x W uint8 tensor)."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(),
            v2.RandomApply([v2.RandomAffine(degrees=0.0, scale=scale)], p=0.5),
            BandJitter(brightness, contrast),
        ]
    )
