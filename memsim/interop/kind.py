"""The ``nir`` network kind: a spiking network trained elsewhere (snnTorch, Norse, ...), given as a NIR graph.

memsim does not train these (``train`` says so); it deploys them on chips and evaluates them like its own
networks, through :func:`memsim.deploy.evaluate_on_chips`. What a NIR file does not say - the dataset, how
images become input currents and over how many time steps, the time step of the neurons - is a
:class:`NIRSetup`, given by the caller (``memsim evaluate MODEL.nir --data ... --steps ... --dt ...``, or a
sweep spec). The readout is the most spikes over the steps (for a non-spiking output node, the largest sum).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..deploy.chip import Chip
from ..deploy.kinds import NetworkKind, TrainedNetwork, register_kind
from ..errors import ParameterError
from ..training.data import DATASETS, ENCODINGS, dataset_info, encode
from .nir import NEURON_MAPPINGS, import_nir
from .nir_fit import NIRFitWarning
from .nir_graph import NIRError, check_graph, read_graph

__all__ = ["NIRSetup", "NIRKind", "load_nir"]


@dataclass(frozen=True)
class _Data:
    dataset: str
    data_dir: str | None


@dataclass(frozen=True)
class NIRSetup:
    """What a NIR graph does not state: ``dataset`` (a memsim dataset name), ``steps`` (time steps per image),
    ``encoding`` (``direct``: the image drives the input at every step; ``rate``, ``latency``), ``dt`` (the
    neurons' time step, default the graph's ``metadata['dt']``), ``data_dir``, ``neurons`` (``digital``, or
    ``memristive``: LIF nodes on fitted vLIF circuits of ``card``, see :func:`memsim.interop.nir.import_nir`)."""

    dataset: str
    steps: int = 25
    encoding: str = "direct"
    dt: float | None = None
    data_dir: str | None = None
    neurons: str = "digital"
    card: str | None = None

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ParameterError("dataset", self.dataset, f"one of {list(DATASETS)}", "name the data the graph reads")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ParameterError("steps", self.steps, "an integer >= 1", "give the time steps per image")
        if self.encoding not in ENCODINGS:
            raise ParameterError("encoding", self.encoding, f"one of {list(ENCODINGS)}", "choose an input encoding")
        if self.dt is not None and not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise ParameterError("dt", self.dt, "a positive time step", "snnTorch's NIR export uses dt = 1e-4")
        if self.neurons not in NEURON_MAPPINGS:
            raise ParameterError("neurons", self.neurons, f"one of {list(NEURON_MAPPINGS)}",
                                 "'memristive' maps LIF nodes onto fitted vLIF circuits")
        if self.card is not None and self.neurons != "memristive":
            raise ParameterError("card", self.card, "only with neurons = 'memristive'", "drop the card")

    @property
    def data(self) -> _Data:  # what deploy and the commands read of a run's config
        return _Data(self.dataset, self.data_dir)


class NIRKind(NetworkKind):
    name = "nir"
    title = "a spiking network imported from a NIR graph (snnTorch, Norse, SpikingJelly, Sinabs, Rockpool, Lava)"

    def check_config(self, cfg, preset=None) -> None:
        if not isinstance(cfg, NIRSetup):
            raise ParameterError("config", type(cfg).__name__, "a memsim.interop.kind.NIRSetup", "describe the data")

    def train(self, cfg, **kwargs):
        raise NIRError("memsim does not train NIR graphs; train the network in its own framework and export it "
                       "again. Fix: use the graph as trained, or fine-tune a memsim network instead")

    def load(self, path: Path, checkpoint, cfg) -> TrainedNetwork:
        return load_nir(path, cfg)

    def arch(self, cfg) -> str:
        return "nir"

    def deploy(self, network: TrainedNetwork, chip: Chip) -> nn.Module:
        setup = network.config
        kw = {"neurons": setup.neurons, "card": setup.card} if setup.neurons != "digital" else {}
        if chip.is_ideal:
            return import_nir(network.state, dt=setup.dt, **kw)
        return import_nir(network.state, dt=setup.dt, chip=chip, **kw)

    def inputs(self, network: TrainedNetwork, images: torch.Tensor, chip: Chip) -> torch.Tensor:
        setup = network.config
        x = encode(setup.encoding, images, setup.steps, generator=torch.Generator().manual_seed(chip.seed))
        return x.reshape(setup.steps, images.shape[0], *_input_shape(network))

    def evaluate(self, network: TrainedNetwork, model: nn.Module, data, *, chip: Chip,
                 batch_size: int = 256) -> dict[str, float]:
        correct, loss_sum = 0, 0.0
        model.eval()
        with torch.no_grad():
            for k in range(0, len(data), batch_size):
                images, labels = data.images[k:k + batch_size], data.labels[k:k + batch_size]
                scores = model(self.inputs(network, images, chip)).sum(0).reshape(images.shape[0], -1)
                correct += int((scores.argmax(-1) == labels).sum())
                loss_sum += float(F.cross_entropy(scores, labels, reduction="sum"))
        return {"accuracy": correct / len(data), "loss": loss_sum / len(data), "samples": len(data)}

    def probe_images(self, network: TrainedNetwork) -> torch.Tensor:
        return torch.zeros(1, dataset_info(network.config.dataset).num_inputs)


def _input_shape(network: TrainedNetwork) -> tuple[int, ...]:
    plan = check_graph(network.state)
    return plan.shapes[plan.order[0]]


def load_nir(path, setup: NIRSetup) -> TrainedNetwork:
    """A NIR file as a network memsim can deploy and evaluate (checked completely, and against the dataset)."""
    graph = read_graph(path)
    plan = check_graph(graph)
    n_in = dataset_info(setup.dataset).num_inputs
    shape = plan.shapes[plan.order[0]]
    if math.prod(shape) != n_in:
        raise NIRError(f"the graph's input {list(shape)} ({math.prod(shape)} values) does not take "
                       f"{setup.dataset} images ({n_in} values). Fix: give the dataset the network was trained on")
    import_nir(graph, dt=setup.dt)  # the time step and every node build, before any data is loaded
    if setup.neurons == "memristive":  # every LIF node fits (or names the parameter outside the fittable range)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NIRFitWarning)  # deploy warns again, where the network is built
            import_nir(graph, dt=setup.dt, neurons=setup.neurons, card=setup.card)
    return TrainedNetwork(KIND, setup, Path(path), graph)


KIND = register_kind(NIRKind())
