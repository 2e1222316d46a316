"""Reading and checking a NIR graph before anything is built.

The Neuromorphic Intermediate Representation (NIR, the ``nir`` package) is how snnTorch, Norse, SpikingJelly,
Sinabs, Rockpool and Lava exchange spiking networks: a directed graph of nodes (``Affine``, ``Conv2d``, ``LIF``,
...) whose edges carry tensors; several edges into one node are summed. Shapes exclude the batch and time
dimensions.

:func:`read_graph` opens a file (HDF5) or takes a graph; :func:`check_graph` returns the nodes in evaluation
order and every node's output shape, or a :class:`NIRError` naming the node: an unknown node type, a cycle,
an unconnected node, an edge to a node that does not exist, or shapes that do not match between nodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MemsimError

__all__ = ["NIRError", "SUPPORTED_NODES", "GraphPlan", "read_graph", "check_graph", "require_nir"]

#: node types memsim builds (``I`` is NIR's integrator)
SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "SumPool2d", "AvgPool2d", "Scale",
                   "Threshold", "LIF", "CubaLIF", "IF", "LI", "I")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class NIRError(MemsimError, ValueError):
    """A NIR file or graph memsim cannot build: names the node, its type and the fix."""


def require_nir():
    """The ``nir`` package, or a :class:`NIRError` saying how to install it."""
    try:
        import nir
    except ImportError:
        raise NIRError("reading NIR graphs needs the 'nir' package. Fix: pip install 'memsim[nir]' "
                       "(or pip install nir)") from None
    return nir


def read_graph(source):
    """A ``nir.NIRGraph`` from a graph object or a ``.nir`` (HDF5) file; anything else is a one-line error."""
    nir = require_nir()
    if isinstance(source, nir.NIRGraph):
        return source
    path = Path(source)
    if not path.is_file():
        raise NIRError(f"NIR file {path} does not exist. Fix: give the path of a graph written by nir.write "
                       f"(e.g. snntorch.export_nir + nir.write)")
    with open(path, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        raise NIRError(f"{path}: not a NIR graph (a NIR file is HDF5, which starts with the bytes \\x89HDF). "
                       f"Fix: write the graph with nir.write(path, graph)")
    try:
        graph = nir.read(path)
    except Exception as exc:  # h5py / nir raise many types on damaged or foreign HDF5 files
        text = " ".join(str(exc).split())[:200]
        raise NIRError(f"{path}: an HDF5 file but not a readable NIR graph ({type(exc).__name__}: {text}). "
                       f"Fix: write the graph with nir.write from nir >= 1.0") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"{path}: holds a single {type(graph).__name__} node, not a graph. Fix: wrap it in a "
                       f"nir.NIRGraph with Input and Output nodes")
    return graph


@dataclass(frozen=True)
class GraphPlan:
    """A checked graph: ``order`` (node names, inputs first), ``inputs`` (node -> its source nodes) and
    ``shapes`` (node -> output shape, without batch and time)."""

    order: tuple[str, ...]
    inputs: dict[str, tuple[str, ...]]
    shapes: dict[str, tuple[int, ...]]


def _type_name(node) -> str:
    return type(node).__name__


def _shape(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
        if value is None:
            return None
    arr = np.asarray(value).reshape(-1)
    return tuple(int(v) for v in arr)


def _pair(value) -> tuple[int, int]:
    arr = np.asarray(value).reshape(-1)
    return (int(arr[0]), int(arr[0])) if arr.size == 1 else (int(arr[0]), int(arr[1]))


def _pool_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def _out_shape(name: str, node, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of ``node`` for the input ``shape``, or a NIRError when the input cannot feed it."""
    kind = _type_name(node)

    def mismatch(expected: str) -> NIRError:
        return NIRError(f"node '{name}' ({kind}) gets an input of shape {list(shape)} but expects {expected}. "
                        f"Fix: check the edges into '{name}' and the shapes of the nodes before it")

    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight)
        if w.ndim != 2 or not shape or shape[-1] != w.shape[1]:
            raise mismatch(f"a last dimension of {w.shape[1] if w.ndim == 2 else '?'} (weight {list(w.shape)})")
        return (*shape[:-1], int(w.shape[0]))
    if kind == "Conv2d":
        w = np.asarray(node.weight)
        if len(shape) != 3 or w.ndim != 4 or shape[0] != w.shape[1] * int(node.groups):
            raise mismatch(f"[channels = {w.shape[1] * int(node.groups)}, height, width]")
        (kh, kw), (sh, sw), (dh, dw) = w.shape[2:], _pair(node.stride), _pair(node.dilation)
        pad = node.padding
        if isinstance(pad, str):
            if pad == "same":
                return (int(w.shape[0]), shape[1], shape[2])
            if pad != "valid":
                raise NIRError(f"node '{name}' (Conv2d): padding = {pad!r} is invalid: allowed an integer, a pair, "
                               f"'same' or 'valid'")
            pad = 0
        ph, pw = _pair(pad)
        return (int(w.shape[0]), _pool_out(shape[1], dh * (kh - 1) + 1, sh, ph),
                _pool_out(shape[2], dw * (kw - 1) + 1, sw, pw))
    if kind in ("SumPool2d", "AvgPool2d"):
        if len(shape) != 3:
            raise mismatch("[channels, height, width]")
        (kh, kw), (sh, sw), (ph, pw) = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        return (shape[0], _pool_out(shape[1], kh, sh, ph), _pool_out(shape[2], kw, sw, pw))
    if kind == "Flatten":
        start = int(node.start_dim) % max(len(shape), 1)
        end = int(node.end_dim) % max(len(shape), 1)
        return (*shape[:start], int(np.prod(shape[start:end + 1])), *shape[end + 1:])
    # element-wise nodes: neurons, Scale, Threshold, Output: their parameters broadcast over the shape
    for field in ("tau", "tau_mem", "tau_syn", "r", "v_threshold", "threshold", "scale", "v_leak"):
        value = getattr(node, field, None)
        if value is not None and np.ndim(value) > 0 and np.size(value) > 1:
            try:
                np.broadcast_shapes(np.shape(value), shape)
            except ValueError:
                raise mismatch(f"a shape that its parameter {field} {list(np.shape(value))} broadcasts to") from None
    return shape


def check_graph(graph) -> GraphPlan:
    """Check ``graph`` completely (types, edges, connectivity, cycles, shapes) and return its :class:`GraphPlan`."""
    nodes = dict(graph.nodes)
    for name, node in nodes.items():
        kind = _type_name(node)
        if kind == "NIRGraph":
            raise NIRError(f"node '{name}' is a subgraph (NIRGraph, e.g. a recurrent layer); memsim builds "
                           f"feed-forward graphs of {', '.join(SUPPORTED_NODES)}. Fix: export a network without "
                           f"recurrent layers")
        if kind not in SUPPORTED_NODES:
            raise NIRError(f"node '{name}' has type {kind}, which memsim does not build; supported: "
                           f"{', '.join(SUPPORTED_NODES)}. Fix: replace it in the exporting framework")
    incoming: dict[str, list[str]] = {n: [] for n in nodes}
    outgoing: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in graph.edges:
        src, dst = edge
        for end in (src, dst):
            if end not in nodes:
                raise NIRError(f"edge {src!r} -> {dst!r} names node {end!r}, which the graph does not have. "
                               f"Fix: correct the edge list")
        outgoing[src].append(dst)
        incoming[dst].append(src)
    inputs = [n for n, node in nodes.items() if _type_name(node) == "Input"]
    outputs = [n for n, node in nodes.items() if _type_name(node) == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError(f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes; memsim builds graphs "
                       f"with one of each. Fix: add or merge them")
    for name in nodes:
        kind = _type_name(nodes[name])
        if (kind != "Input" and not incoming[name]) or (kind != "Output" and not outgoing[name]):
            side = "no incoming edge" if kind != "Input" and not incoming[name] else "no outgoing edge"
            raise NIRError(f"node '{name}' ({kind}) is unconnected: it has {side}. Fix: connect it or remove it")
    # Kahn's algorithm: a node is ready once all of its sources are
    waiting = {n: len(incoming[n]) for n in nodes}
    ready = [n for n in nodes if waiting[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in outgoing[n]:
            waiting[m] -= 1
            if waiting[m] == 0:
                ready.append(m)
    if len(order) < len(nodes):
        stuck = sorted(n for n in nodes if waiting[n] > 0)
        raise NIRError(f"the graph has a cycle through {stuck}; memsim builds feed-forward graphs. Fix: remove "
                       f"the recurrent edge")
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = nodes[name]
        if _type_name(node) == "Input":
            shape = _shape(node.input_type)
            if not shape:
                raise NIRError(f"Input node '{name}' has no shape. Fix: give nir.Input an input_type")
            shapes[name] = shape
            continue
        ins = [shapes[s] for s in incoming[name]]
        if any(s != ins[0] for s in ins):
            raise NIRError(f"node '{name}' ({_type_name(node)}) sums inputs of different shapes "
                           f"{[list(s) for s in ins]} from {incoming[name]}. Fix: the summed edges must carry "
                           f"one shape")
        shapes[name] = _out_shape(name, node, ins[0])
    declared = _shape(getattr(nodes[outputs[0]], "output_type", None))
    if declared and int(np.prod(declared)) != int(np.prod(shapes[outputs[0]])):
        raise NIRError(f"Output node '{outputs[0]}' declares shape {list(declared)} but receives "
                       f"{list(shapes[outputs[0]])}. Fix: correct the Output's output_type")
    return GraphPlan(order=tuple(order), inputs={n: tuple(incoming[n]) for n in nodes}, shapes=shapes)
