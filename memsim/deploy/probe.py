"""Watching a deployed network's crossbar layers during a forward pass: input vectors read, and the error of each
layer's crossbar product against the exact product of its (mapped, pruned) weights.

:class:`LayerProbe` puts a forward hook on every crossbar layer. It counts every input vector the layer reads (one
per sample of a dense layer, one per output position of a convolution, one per time step of a hidden MSNN layer)
and, on the layer's first call only (the first evaluation batch), the relative RMS error of its output against
:func:`exact_product` - measured inside the evaluation itself, so measuring it draws no noise and reads no extra
batch.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..nn.crossbar import CrossbarConv2d
from ..nn.grouped import GroupedCrossbarConv2d, _Mapped

__all__ = ["LayerProbe", "exact_product"]


def _is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, (CrossbarConv2d, GroupedCrossbarConv2d))


def exact_product(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The exact product of a crossbar layer's mapped (pruned) weights with its input ``x``, without bias."""
    w = layer.weight * layer.weight_mask if isinstance(layer, _Mapped) else layer.weight
    if _is_conv(layer):
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, getattr(layer, "groups", 1))
    return F.linear(x, w)


class LayerProbe:
    """Forward hooks on ``layers`` (``(name, crossbar layer)`` pairs); :meth:`close` removes them.

    ``vectors[name]``: input vectors the layer read; :meth:`output_error`: the relative RMS error of its first
    call's product (``error=False``: not measured)."""

    def __init__(self, layers: list[tuple[str, nn.Module]], *, error: bool = True):
        self.error = error
        self.vectors = {name: 0 for name, _ in layers}
        self._calls = {name: 0 for name, _ in layers}
        self._sq_err = {name: 0.0 for name, _ in layers}
        self._sq_ref = {name: 0.0 for name, _ in layers}
        self._handles = [layer.register_forward_hook(self._hook(name)) for name, layer in layers]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            x = inputs[0]
            if _is_conv(module):
                self.vectors[name] += output.shape[0] * output.shape[2] * output.shape[3]
            else:
                self.vectors[name] += x.numel() // x.shape[-1]
            if self.error and self._calls[name] == 0:
                with torch.no_grad():
                    ref = exact_product(module, x)
                    y = output
                    if module.bias is not None:
                        y = y - (module.bias[None, :, None, None] if output.dim() == 4 else module.bias)
                    self._sq_err[name] += float(((y - ref) ** 2).sum())
                    self._sq_ref[name] += float((ref ** 2).sum())
            self._calls[name] += 1
        return hook

    def output_error(self, name: str) -> float:
        """``||y - y_exact|| / ||y_exact||`` of the layer's first call (0 when the exact product is zero)."""
        return (self._sq_err[name] / self._sq_ref[name]) ** 0.5 if self._sq_ref[name] > 0 else 0.0

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "LayerProbe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
