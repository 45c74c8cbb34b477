"""``timm:<name>``: any timm model, untrained, behind the same `Normalize` layer as ours.

timm is imported on first use only: importing it takes seconds.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

from torch import nn

from bench.archs.base import ARCHS, normalized
from bench.registry import UnknownNameError


def timm_factory(model_name: str) -> Callable[..., nn.Module]:
    """The ARCHS factory for timm model ``model_name``; unknown names list close matches."""
    import timm

    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
        raise UnknownNameError("timm model", f"timm:{model_name}",
                               [f"timm:{n}" for n in close] + ["timm:<any name in timm.list_models()>"])

    def create(*, num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
               std: Sequence[float]) -> nn.Module:
        cfg = timm.models.get_pretrained_cfg(model_name)
        # Models with a fixed input size (ViT, Swin, Mixer) size their patch grid from img_size.
        size = {"img_size": image_size} if cfg is not None and cfg.fixed_input_size else {}
        net = timm.create_model(model_name, pretrained=False, num_classes=num_classes,
                                in_chans=in_channels, **size)
        return normalized(net, mean, std, in_channels)

    create.__doc__ = f"timm model {model_name} (pretrained=False)"
    return create


ARCHS.register_prefix("timm", timm_factory)
