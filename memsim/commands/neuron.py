"""``memsim neuron CARD``: waveform (SPICE vs torch), f-I curve and phase portrait; SPICE export."""
from __future__ import annotations

import sys

import numpy as np

from ..io import atomic_write_text
from ..neurons import list_neuron_cards, load_neuron_card
from ..neurons.characterise import fi_curve, figure
from ..neurons.netlist import neuron_subcircuit
from ..neurons.simulate import compare, spice_trace, standard_stimuli, torch_trace
from ..plots import save
from .argtypes import plot_file
from .listing import load_listed


def register(sub) -> None:
    p = sub.add_parser("neuron", help="memristive neuron cards: characterisation plot, SPICE export")
    p.add_argument("card", nargs="?", help="neuron card name or path (e.g. mif_neuron, vlif_neuron)")
    p.add_argument("--plot", metavar="FILE", type=plot_file, help="write waveform (SPICE vs torch), f-I curve, phase portrait")
    p.add_argument("--no-spice", action="store_true", help="torch only (no ngspice needed)")
    p.add_argument("--export", action="store_true", help="write the card's ngspice subcircuit (.lib)")
    p.add_argument("-o", "--output", help="with --export: output file ('-' for stdout; default next to the card)")
    p.add_argument("--list", action="store_true", help="list the neuron cards")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list:
        unreadable: list = []
        for name, card in load_listed(list_neuron_cards(unreadable), load_neuron_card, unreadable):
            print(f"{name:20s} {card.type:5s} {card.description}")
        return 0
    if not args.card:
        print("memsim neuron: give a CARD (or --list)", file=sys.stderr)
        return 2
    card = load_neuron_card(args.card)
    if not (args.plot or args.export):
        print(f"{card.name} ({card.type}): {card.description}")
        for k, v in card.parameters.items():
            print(f"  {k:6s} = {v:g}")
        for k, m in enumerate(card.memristors):
            print(f"  M{k + 1}: {m.name} ({m.family.name}) " + " ".join(f"{a}={b:g}" for a, b in m.parameters.items()))
        print(f"  dt = {card.dt:g} s, input range {list(card.input_range)} A")
        return 0
    if args.export:
        text = neuron_subcircuit(card)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            print(f"wrote {atomic_write_text(args.output or card.lib_path(), text)}")
    if args.plot:
        traces = []
        for stim in standard_stimuli(card):
            model = torch_trace(card, stim)
            ref = None if args.no_spice else spice_trace(card, stim)
            if ref is not None:
                c = compare(card, model, ref, card.dt)
                print(f"{stim.label:24s} waveform error {c['waveform_error']:.2e} of amplitude, "
                      f"spike shift {c['spike_shift_steps']:.3f} steps, spikes {c['spikes_torch']}/{c['spikes_spice']}")
            traces.append((stim.label, model, ref))
        amps = np.linspace(0.0, 3.0, 25) * card.verify.train_amplitude
        fi = fi_curve(card, amps)
        print(f"wrote {save(figure(card, traces, fi), args.plot)}")
    return 0
