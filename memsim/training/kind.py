"""The ``msnn`` network kind: fully memristive SNNs (:mod:`memsim.training`) as :mod:`memsim.deploy` sees them.

Trained by :func:`memsim.training.loop.train_msnn`, loaded from a checkpoint's synaptic weights, deployed by
rebuilding the network on the chip's preset (every synapse stage a crossbar layer of the chip's mode, re-mapped and
pruned as the chip says), read out through the run's input encoder.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..deploy.chip import Chip
from ..deploy.kinds import NetworkKind, TrainedNetwork, register_kind
from ..errors import ParameterError
from ..nn.crossbar import CrossbarConv2d, CrossbarLinear
from ..nn.grouped import GroupedCrossbarConv2d, MappedCrossbarLinear
from ..nn.pruning import check_applies, detection_block, prune_layer_, prune_weights_, tile_block
from .loop import build_encoder, evaluate, network_from_checkpoint, prepare, train_msnn
from .network import MemristiveSNN

__all__ = ["MSNN"]


def _as_conv(x: CrossbarConv2d) -> nn.Conv2d:
    conv = nn.Conv2d(x.in_channels, x.out_channels, x.kernel_size, x.stride, x.padding, x.dilation,
                     bias=x.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(x.weight)
        if x.bias is not None:
            conv.bias.copy_(x.bias)
    return conv


def _remap(net: MemristiveSNN, chip: Chip) -> None:
    """Re-map the crossbar synapses with the chip's mapping scheme(s) and pruning, in place (the weights, and the
    DAC range when saved, carry over)."""
    if chip.mapping == "dense" and not chip.prune:
        return
    check_applies(chip.prune, [syn.weight for syn in net.synapses])
    names = {f"synapses.{k}.xbar": syn for k, syn in enumerate(net.synapses) if syn.crossbar_layer is not None}
    per_layer = chip.layer_mapping if isinstance(chip.layer_mapping, dict) else {}
    for name, scheme in per_layer.items():
        if name not in names:
            raise ParameterError(f"chip.mapping[{name!r}]", scheme, f"a scheme for one of the crossbar layers "
                                 f"{sorted(names)}", f"the mapping scheme does not apply to layer '{name}': the "
                                                     f"network has no crossbar layer of that name")
    for name, syn in names.items():
        scheme = per_layer.get(name, "dense") if per_layer else chip.mapping
        xbar, kw = syn.crossbar_layer, dict(preset=chip.preset, mode=chip.mode, mapping=scheme,
                                            block=detection_block(chip.prune, chip.block, tile_block(chip.preset)))
        if isinstance(xbar, CrossbarLinear):
            new = MappedCrossbarLinear.from_linear(xbar, **kw)
        else:  # the convolutional stage (CrossbarConv2d)
            new = GroupedCrossbarConv2d.from_conv(_as_conv(xbar), **kw)
            new.input_scale.copy_(xbar.input_scale)
        if chip.prune:
            prune_layer_(new, chip.prune)
        syn.set_crossbar_layer(new)


def _prune_ideal(net: MemristiveSNN, pruning) -> None:
    """Pruning of the exact synapses' weights (the ideal chip with ``prune``)."""
    prune_weights_([(syn.weight, 1) for syn in net.synapses], pruning)


class MSNN(NetworkKind):
    name = "msnn"
    title = "fully memristive spiking neural network (MIF neurons, crossbar synapses), trained by BPTT"

    def check_config(self, cfg, preset=None) -> None:
        prepare(cfg, preset)

    def train(self, cfg, *, resume=False, init=None, progress=True, log=print, max_batches=None, preset=None,
              prune=None):
        return train_msnn(cfg, resume=resume, init=init, progress=progress, log=log, max_batches=max_batches,
                          preset=preset, prune=prune)

    def load(self, path: Path, checkpoint, cfg) -> TrainedNetwork:
        network_from_checkpoint(checkpoint, cfg, f"checkpoint {path}", crossbar="ideal")  # names and shapes, now
        return TrainedNetwork(self, cfg, Path(path), checkpoint)

    def arch(self, cfg) -> str:
        return "msnn"

    def deploy(self, network: TrainedNetwork, chip: Chip) -> nn.Module:
        source = f"checkpoint {network.source}"
        if chip.is_ideal:
            net = network_from_checkpoint(network.state, network.config, source, crossbar="ideal")
            if chip.prune:
                _prune_ideal(net, chip.prune)
            return net.eval()
        net = network_from_checkpoint(network.state, network.config, source, crossbar=chip.preset, mode=chip.mode,
                                      noise_seed=chip.seed)
        _remap(net, chip)
        return net.eval()

    def inputs(self, network: TrainedNetwork, images: torch.Tensor, chip: Chip) -> torch.Tensor:
        # a fresh encoder per call: a random (rate) encoding draws from the run's seed, whatever was encoded before
        return build_encoder(network.config)(images)

    def evaluate(self, network: TrainedNetwork, model: nn.Module, data, *, chip: Chip,
                 batch_size: int = 256) -> dict[str, float]:
        # the encoder's draws of chip s: those of the evaluation during training for chip 0 (training seed + 1)
        gen = torch.Generator().manual_seed(network.config.training.seed + 1 + chip.seed)
        return evaluate(model, build_encoder(network.config), data, batch_size, generator=gen)

    def probe_images(self, network: TrainedNetwork) -> torch.Tensor:
        return torch.zeros(1, network.config.network.layers[0])


register_kind(MSNN())
