"""Network kinds, looked up by name: what memsim trains, loads, deploys on a chip and evaluates.

A kind is a value of a config's ``network.kind``: ``msnn`` (the fully memristive SNN, :mod:`memsim.training.kind`)
and ``ann`` (conventional networks, :mod:`memsim.ann.kind`). Each answers the same questions
(:class:`NetworkKind`), so the commands, the sweep and :func:`memsim.deploy.evaluate_on_chips` never ask which kind
a network is. The kinds live with their stacks, above this layer, and never import each other.

Adding a kind: subclass :class:`NetworkKind` in one module of its stack, end that module with
``register_kind(MyKind())``, and list the module in :data:`BUILTIN` (a kind outside memsim calls
:func:`register_kind` itself).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..errors import ParameterError
from ..schema import suggest

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .chip import Chip

__all__ = ["NetworkKind", "TrainedNetwork", "BUILTIN", "register_kind", "network_kind", "kind_names"]

#: the kinds memsim ships: name -> the module that defines and registers it. They sit above this layer, so they are
#: imported by name on first use (as a plugin's entry point is), never by an import statement here.
BUILTIN: dict[str, str] = {"msnn": "memsim.training.kind", "ann": "memsim.ann.kind", "nir": "memsim.interop.kind"}

_KINDS: dict[str, "NetworkKind"] = {}


@dataclass(frozen=True)
class TrainedNetwork:
    """A trained network, ready to be deployed on chips: its kind, its run's config, the checkpoint it came from,
    and what the kind keeps to build a chip's network from (``state``: the float model of an ANN, the checkpoint of
    an MSNN; only the kind reads it)."""

    kind: "NetworkKind"
    config: Any
    source: Path
    state: Any

    @property
    def arch(self) -> str:
        """A short label of the architecture (``msnn``, ``mlp``, ``vgg_dw``, ...)."""
        return self.kind.arch(self.config)

    @property
    def dataset(self) -> str:
        return self.config.data.dataset


class NetworkKind:
    """What every kind of network answers (one instance per kind, registered by :func:`register_kind`)."""

    #: the config's ``network.kind``
    name: ClassVar[str]
    #: one line for listings and errors
    title: ClassVar[str]

    def check_config(self, cfg, preset=None) -> None:
        """Every check of ``cfg`` that can fail, before any data is loaded or any training runs (``preset``: the
        :class:`memsim.crossbar.Preset` a hardware-aware run would train through instead of ``network.crossbar``)."""
        raise NotImplementedError

    def train(self, cfg, *, resume: bool = False, init=None, progress: bool = True,
              log: Callable[[str], None] = print, max_batches: int | None = None, preset=None, prune=None):
        """Train the network of ``cfg`` (a :class:`memsim.training.TrainResult`); ``preset``: hardware-aware
        training through this :class:`memsim.crossbar.Preset` object instead of ``network.crossbar``; ``prune``: a
        :class:`memsim.nn.pruning.Pruning` (or a fraction) applied to the crossbar weights once they are loaded
        (``init``) and held in training: fine-tuning after pruning, the pruned weights stay zero."""
        raise NotImplementedError

    def load(self, path: Path, checkpoint, cfg) -> TrainedNetwork:
        """The trained network of a read checkpoint and its parsed config (``path`` names it in errors)."""
        raise NotImplementedError

    def arch(self, cfg) -> str:
        raise NotImplementedError

    def deploy(self, network: TrainedNetwork, chip: "Chip") -> "nn.Module":
        """The network as ``chip`` runs it, in eval mode: its crossbar layers on the chip's preset in the chip's
        mode, mapped and pruned as the chip says (the ideal chip: the exact product). The caller seeds the chip's
        layers and calibrates it; the first read programs it."""
        raise NotImplementedError

    def inputs(self, network: TrainedNetwork, images: "torch.Tensor", chip: "Chip") -> "torch.Tensor":
        """What the deployed network reads for ``images`` (flat, as the datasets give them): the images themselves,
        or their spike encoding (random encodings draw from a stream of ``chip``'s seed)."""
        raise NotImplementedError

    def evaluate(self, network: TrainedNetwork, model: "nn.Module", data, *, chip: "Chip",
                 batch_size: int = 256) -> dict[str, float]:
        """Accuracy, mean loss and sample count of the deployed ``model`` on ``data`` (an
        :class:`memsim.training.data.ImageDataset`), read in order, batch by batch, without gradient."""
        raise NotImplementedError

    def probe_images(self, network: TrainedNetwork) -> "torch.Tensor":
        """One all-zero input image (flat), for counting what a forward pass reads without data."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<network kind {self.name!r}: {self.title}>"


def register_kind(kind: NetworkKind) -> NetworkKind:
    """Make ``kind`` known by ``kind.name`` (a module defining a kind ends with this call)."""
    if not isinstance(kind, NetworkKind):
        raise ParameterError("kind", kind, "a memsim.deploy.NetworkKind instance", "subclass NetworkKind")
    _KINDS[kind.name] = kind
    return kind


def kind_names() -> list[str]:
    """Names of every known kind (memsim's own and those registered since)."""
    return sorted(set(BUILTIN) | set(_KINDS))


def network_kind(name: str, field: str = "network.kind") -> NetworkKind:
    """The kind called ``name``; an unknown name raises :class:`ParameterError` naming ``field`` and the closest
    known kind."""
    if isinstance(name, str) and name not in _KINDS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])  # its module ends with register_kind(...)
    if isinstance(name, str) and name in _KINDS:
        return _KINDS[name]
    names = kind_names()
    raise ParameterError(field, name, f"one of {names}", suggest(str(name), names, "use one of the listed kinds"))
