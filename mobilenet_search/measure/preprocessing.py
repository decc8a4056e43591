"""How an image becomes a network's input, as plain data that reads without torch.

Every image a study trains or scores on takes the same path (:mod:`mobilenet_search.measure.data`
decodes and resizes it once per proxy size, :func:`mobilenet_search.measure.train.input_transform`
normalises each batch):

1. decode: a file is opened with Pillow and converted to mode ``L`` (1 channel) or ``RGB``
   (3 channels); array sources are uint8 tensors already;
2. resize: the shorter side to ``size`` by ``torchvision.transforms.v2.functional.resize`` on
   the uint8 tensor (bilinear, antialiased; the result stays uint8), then a centre crop to
   ``size`` x ``size``;
3. convert: to float32 without rescaling (values stay 0-255);
4. normalise: ``(x - mean) / std`` per channel, the training images' statistics at that size.

:class:`Preprocessing` describes one such path (a study records it per proxy resolution, an
export in every library entry); :meth:`Preprocessing.transforms` applies it to a raw image
with the very functions the tool trains with, so a network scores what the study recorded:

>>> p = Preprocessing(size=32, channels=1, mean=(120.5,), std=(60.25,))
>>> Preprocessing.from_dict(p.to_dict()) == p
True
>>> p.mode
'L'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mobilenet_search.errors import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image

# The Pillow mode an image file is converted to, by channel count (measure.data's image folders).
MODES = {1: "L", 3: "RGB"}
# What the tool's own path does; an entry that records anything else was written by another version.
_FIXED = {"resize": "shorter_side", "crop": "center", "dtype": "float32", "value_range": (0, 255)}


@dataclass(frozen=True)
class Preprocessing:
    """The input preprocessing of a network: decode, resize, centre crop, float conversion, normalisation.

    ``size``: the side of the square input (a study's proxy resolution); ``channels``: 1 or 3
    (Pillow mode ``L`` or ``RGB``); ``mean`` and ``std``: per channel, on 0-255 pixel values;
    ``resize``: the shorter side to ``size``, keeping the aspect ratio, with ``interpolation``
    and ``antialias``; ``crop``: centred to ``size`` x ``size``; ``dtype`` and ``value_range``:
    the uint8 pixels become float32 as they are (not divided by 255). ``torchvision``: the
    version that resized the study's images (for the record; not checked).
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    antialias: bool = True
    resize: str = "shorter_side"
    crop: str = "center"
    dtype: str = "float32"
    value_range: tuple[int, int] = (0, 255)
    torchvision: str | None = None

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} (expected {value!r})" for name, value in _FIXED.items()
                    if getattr(self, name) != value]
        if not (isinstance(self.size, int) and self.size >= 1):
            problems.append(f"size={self.size!r} (expected a positive integer)")
        if not (isinstance(self.channels, int) and self.channels >= 1):
            problems.append(f"channels={self.channels!r} (expected a positive integer)")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not (isinstance(values, tuple) and len(values) == self.channels
                    and all(isinstance(v, (int, float)) and math.isfinite(v) and (name == "mean" or v > 0)
                            for v in values)):
                problems.append(f"{name}={values!r} (expected {self.channels} finite numbers"
                                f"{', all positive' if name == 'std' else ''})")
        if self.interpolation not in ("nearest", "nearest-exact", "bilinear", "bicubic"):
            problems.append(f"interpolation={self.interpolation!r} (expected bilinear, bicubic or nearest)")
        if problems:
            raise UserError(f"invalid preprocessing: {', '.join(problems)}")

    @property
    def mode(self) -> str | None:
        """The Pillow mode an image is converted to (``L`` or ``RGB``); None for other channel counts."""
        return MODES.get(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples); :meth:`from_dict` reads it back."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing a dict of :meth:`to_dict` describes; anything else is a :class:`UserError`."""
        if not isinstance(data, Mapping):
            raise UserError(f"invalid preprocessing {data!r}: expected a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted({"size", "channels", "mean", "std"} - set(data))
        if unknown or missing:
            raise UserError(f"invalid preprocessing: unknown fields {unknown}, missing fields {missing}")
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        return cls(**values)

    def transforms(self) -> Callable[[Image.Image | torch.Tensor], torch.Tensor]:
        """A function from a raw image to the network's input, by the tool's own decode, resize and normalisation.

        It takes a Pillow image (converted to :attr:`mode`) or a uint8 tensor H x W, C x H x W or
        N x C x H x W, and returns float32 C x ``size`` x ``size`` (N x C x ... for a batch) on the CPU,
        as torchvision's ``Weights.transforms()`` does for its pretrained networks.
        """
        from mobilenet_search.measure.data import input_function

        return input_function(self)
