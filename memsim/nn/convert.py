"""``memsim.convert(model, preset)``: put a torch model's Linear and Conv2d layers on crossbars.

The converted layers keep their weights as trainable parameters (copied from the
original layers), so the converted model can be trained further through the
array model (hardware-aware training), not only evaluated.

Mapping schemes (``mapping=``): ``"dense"`` tiles each layer's whole (unrolled) weight matrix, zeros
included; ``"sparse"`` places only its non-zero blocks and packs them onto as few tiles as possible
(:mod:`memsim.crossbar.sparse`): the groups of a grouped or depthwise convolution, the non-zero
``block`` rectangles (default 8 x 8) of other matrices. ``prune=`` prunes each layer before mapping
(:class:`memsim.nn.pruning.Pruning`: a bare fraction is unstructured magnitude pruning; ``"block"`` zeroes whole
tile-aligned blocks, ``"nm"`` keeps n of every m weights along the inputs, ``"nm_tile"`` the same n inputs for
the outputs of a tile, ``"filter"`` zeroes whole conv filters). Pruned weights become zero cells in dense
mapping; blocks left all-zero, and all-zero outputs and inputs, are not placed in sparse mapping, so block,
nm_tile and filter pruning place fewer tiles.

A converted model is a chip to program and then calibrate: its converter ranges (DAC input range, ADC full
scale) are measured on a calibration batch by :func:`memsim.nn.calibration.calibrate` before it is evaluated
(an eval read of a layer whose preset asks for a measured range raises until then); training sets them from
each batch.
"""
from __future__ import annotations

import copy
import warnings
from typing import Mapping

from torch import nn

from ..crossbar.array import DEFAULT_MODE
from ..crossbar.presets import Preset, load_preset
from ..errors import ParameterError
from .crossbar import CrossbarConv2d, CrossbarLinear
from .grouped import GroupedCrossbarConv2d, MappedCrossbarLinear, check_mapping
from .pruning import Pruning, check_applies, check_tile, detection_block, prune_layer_, tile_block


def _unsupported(conv: nn.Conv2d) -> bool:
    return conv.padding_mode != "zeros" or isinstance(conv.padding, str)


def convert(model: nn.Module, preset: Preset | str, *, mode: str = DEFAULT_MODE, inplace: bool = False,
            skip: tuple[str, ...] = (), mapping: str | Mapping[str, str] = "dense",
            prune: float | Pruning | Mapping = 0.0,
            block: tuple[int, int] | None = None, **kw) -> nn.Module:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` by its crossbar layer.

    ``skip``: qualified names of layers to keep digital (e.g. ``("fc_out",)``). Conv layers that
    cannot be mapped (non-zero padding modes, string padding) stay digital with a warning.
    ``mapping``: ``"dense"`` | ``"sparse"`` for every layer, or ``{layer_name: scheme}`` (layers not named
    are dense); a name that is not a mappable layer raises :class:`memsim.errors.ParameterError` naming it.
    ``prune``: how each converted layer is pruned before mapping: a fraction in [0, 1) (unstructured
    magnitude pruning, as before), a :class:`memsim.nn.pruning.Pruning` or its fields as a dict (method
    ``"unstructured" | "block" | "nm" | "nm_tile" | "filter"``; block and nm_tile pruning align to the preset's
    tile).
    ``block``: block size (outputs, inputs) for detecting non-zero blocks in sparse mapping (default: the groups
    of a grouped conv, else the pruning's block with block pruning, else 8 x 8). Dense, unpruned layers are the
    plain :class:`CrossbarLinear` /
    :class:`CrossbarConv2d`; the others :class:`MappedCrossbarLinear` / :class:`GroupedCrossbarConv2d`.
    Returns the converted model (a deep copy unless ``inplace``).
    """
    preset = load_preset(preset)
    prune = Pruning.parse(prune)
    check_tile(prune, tile_block(preset))  # a block that does not divide the tile stops here
    if isinstance(mapping, str):
        check_mapping(mapping)
        per_layer: dict[str, str] = {}
    elif isinstance(mapping, Mapping):
        per_layer = {str(k): check_mapping(v, f"mapping[{k!r}]") for k, v in mapping.items()}
    else:
        raise ParameterError("mapping", mapping, "'dense', 'sparse' or a {layer_name: scheme} dict",
                             "choose a mapping scheme")
    modules = dict(model.named_modules())
    for name in per_layer:
        layer = modules.get(name)
        why = None
        if layer is None:
            why = "there is no layer of that name"
        elif name in skip:
            why = "it is in skip= (kept digital)"
        elif type(layer) not in (nn.Linear, nn.Conv2d):
            why = f"it is a {type(layer).__name__}, not an nn.Linear or nn.Conv2d"
        elif type(layer) is nn.Conv2d and _unsupported(layer):
            why = f"its padding ({layer.padding!r}, mode {layer.padding_mode!r}) keeps it digital"
        if why:
            mappable = [n for n, m in modules.items() if type(m) in (nn.Linear, nn.Conv2d) and n not in skip]
            raise ParameterError(f"mapping[{name!r}]", per_layer[name],
                                 f"a scheme for one of the crossbar layers {mappable}",
                                 f"the mapping scheme does not apply to layer '{name}': {why}")
    check_applies(prune, [m.weight for n, m in modules.items() if n not in skip and (type(m) is nn.Linear or (
        type(m) is nn.Conv2d and not _unsupported(m)))])
    default = mapping if isinstance(mapping, str) else "dense"
    tile = tile_block(preset)
    target = model if inplace else copy.deepcopy(model)

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in list(module.named_children()):
            qual = f"{prefix}{name}"
            if qual in skip:
                continue
            scheme = per_layer.get(qual, default)
            plain = scheme == "dense" and not prune
            # sparse mapping detects the non-zero blocks of a tiled pruning (block, nm_tile) at its own block
            detect = detection_block(prune, block, tile)
            if type(child) is nn.Linear:
                if plain:
                    new = CrossbarLinear.from_linear(child, preset=preset, mode=mode, **kw)
                else:
                    new = MappedCrossbarLinear.from_linear(child, preset=preset, mode=mode, mapping=scheme,
                                                           block=detect, **kw)
            elif type(child) is nn.Conv2d:
                if _unsupported(child):
                    warnings.warn(f"memsim.convert: {qual} (padding={child.padding!r}, padding_mode="
                                  f"{child.padding_mode!r}) stays digital: only convs with integer zero padding "
                                  f"map onto crossbars")
                    continue
                if plain and child.groups == 1:
                    new = CrossbarConv2d.from_conv(child, preset=preset, mode=mode, **kw)
                else:
                    new = GroupedCrossbarConv2d.from_conv(child, preset=preset, mode=mode, mapping=scheme,
                                                          block=detect if child.groups == 1 else block, **kw)
            else:
                visit(child, qual + ".")
                continue
            if prune:
                prune_layer_(new, prune)
            setattr(module, name, new)

    visit(target, "")
    return target
