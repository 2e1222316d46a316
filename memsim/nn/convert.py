"""``memsim.convert(model, preset)``: put a torch model's Linear and Conv2d layers on crossbars.

The converted layers keep their weights as trainable parameters (copied from the
original layers), so the converted model can be trained further through the
array model (hardware-aware training), not only evaluated.
"""
from __future__ import annotations

import copy
import warnings

from torch import nn

from ..crossbar.presets import Preset, load_preset
from .crossbar import CrossbarConv2d, CrossbarLinear


def convert(model: nn.Module, preset: Preset | str, *, mode: str = "noisy", inplace: bool = False,
            skip: tuple[str, ...] = (), **kw) -> nn.Module:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` (groups = 1) of ``model`` by its crossbar layer.

    ``skip``: qualified names of layers to keep digital (e.g. ``("fc_out",)``). Conv layers that
    cannot be mapped (groups > 1, non-zero padding modes) stay digital with a warning.
    Returns the converted model (a deep copy unless ``inplace``).
    """
    preset = load_preset(preset)
    target = model if inplace else copy.deepcopy(model)

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in list(module.named_children()):
            qual = f"{prefix}{name}"
            if qual in skip:
                continue
            if type(child) is nn.Linear:
                setattr(module, name, CrossbarLinear.from_linear(child, preset=preset, mode=mode, **kw))
            elif type(child) is nn.Conv2d:
                if child.groups != 1 or child.padding_mode != "zeros" or isinstance(child.padding, str):
                    warnings.warn(f"memsim.convert: {qual} (groups={child.groups}, padding={child.padding!r}) "
                                  "stays digital: only groups=1 convs with integer zero padding map onto crossbars")
                    continue
                setattr(module, name, CrossbarConv2d.from_conv(child, preset=preset, mode=mode, **kw))
            else:
                visit(child, qual + ".")

    visit(target, "")
    return target
