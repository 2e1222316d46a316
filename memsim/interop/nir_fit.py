r"""LIF neurons and memsim's memristive neurons fitted to each other, with the fit's error measured.

**A NIR LIF on a vLIF circuit** (:func:`fit_vlif`, import with ``neurons="memristive"``). The LIF that memsim's
digital neurons compute (forward Euler at the graph's ``dt``: :math:`v \leftarrow \beta v + (1-\beta)(v_{leak} +
R I)`, :math:`\beta = 1 - dt/\tau`) is, for inputs held over each step, the exact solution of a continuous LIF with
:math:`\tau_c = -dt / \ln\beta`. The vLIF card's resistances are multiplied by
:math:`f = \tau_c / ((R_{off} + R_L) C)`, so that its subthreshold membrane has that time constant (capacitance,
switch voltages and the ratios leak : discharge kept); the switch's time constant becomes about one graph step
(at most :math:`\tau_c / 10`), so that a spike and its discharge fit in a step, and the circuit runs at a tenth of
it (RK4). The LIF's potential maps to the membrane voltage :math:`V = s\,(v - v_{leak})` and its input to the
circuit's current :math:`I_c = s R I / (R_{off} + R_L)`; the scale :math:`s` is chosen among values from the
switch's :math:`v_{on}` (where a fast transient fires it) to its measured DC firing level (where a sustained input
does), the one with the smallest spike-count error on the standard stimuli.

What the circuit cannot follow is stated, not hidden: the vLIF's vector field has negative divergence everywhere
(Bendixson-Dulac), so it has no limit cycle and **does not fire repeatedly under a sustained input**: it fires on
input transients and then rests with its switch partly ON. Its "reset" is the discharge through the switch towards
its rest voltage, so ``v_reset`` must equal ``v_leak``; ``tau <= dt`` (an Euler LIF with :math:`\beta \le 0`) and
``v_threshold <= v_leak`` have no circuit either. Those are errors; the spike-count error of what does map is
measured (:class:`FitReport`) on a standard stimulus and warned about when it is large.

**A MIF neuron as a NIR LIF** (:func:`fit_mif`, export with ``neurons="lif_approximation"``). For its memristors at
their initial states the MIF membrane is a linear RC: :math:`G_r = G(x_1) + G(x_2)`, :math:`\tau_c = C / G_r`,
:math:`V_{rest} = (G(x_1) E_1 + G(x_2) E_2) / G_r`; the LIF takes :math:`\tau = dt / (1 - e^{-dt/\tau_c})` (the
Euler step that is exact for held inputs), :math:`R = 1/G_r` (V/A), :math:`v_{leak} = V_{rest}`, the card's spike
level, and a threshold, reset and spike amplitude :math:`A` fitted to the circuit's responses to standard stimuli
(DC steps from 0.5 to 100 x the rheobase, pulse trains): the drive the next layer integrates, the mean membrane
excursion :math:`\overline{V - V_{rest}}`, is replaced by :math:`A` times the LIF's spike rate (least squares over
the stimuli; a grid over threshold and reset). The spike counts are reported beside it: the MIF fires once and then
holds its membrane high, which a LIF (no refractoriness, no analog output) cannot do.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ParameterError
from ..mathns import TORCH
from ..neurons.cards import NeuronCard, load_neuron_card
from ..neurons.dynamics import NeuronDynamics

__all__ = ["LIFParams", "FitReport", "VLIFFit", "MIFFit", "NIRFitWarning", "fit_vlif", "fit_mif",
           "COUNT_WARNING", "euler_lif", "run_circuit", "warn_if_inexact"]

#: a relative spike-count error above this on the standard stimuli is warned about
COUNT_WARNING = 0.1
#: the circuit's time step as a fraction of the (time-scaled) switch's time constant
_DT_FRACTION = 0.1


class NIRFitWarning(UserWarning):
    """A memristive neuron follows its LIF only approximately; the message states the measured error."""


@dataclass(frozen=True)
class LIFParams:
    """One LIF neuron in NIR's terms: ``tau`` (s), ``r`` (input to voltage), ``v_leak``, ``v_threshold``,
    ``v_reset``."""

    tau: float
    r: float
    v_leak: float
    v_threshold: float
    v_reset: float


@dataclass(frozen=True)
class FitReport:
    """The measured error of a fit; ``labels`` name the reference and the fitted model (``("LIF", "circuit")``:
    memsim's digital LIF is the reference; ``("MIF", "LIF")``: the MIF circuit is).

    ``target_tau``: the membrane time constant to reproduce (s); ``fitted_tau``: the one measured on the circuit's
    response to a small step (a log-linear fit); ``membrane_error``: the largest difference of the two membrane
    responses to a subthreshold step, as a fraction of the threshold's distance from rest; ``counts``: per standard
    stimulus (label -> (reference spikes, fitted model spikes)); ``count_error``: their total absolute difference
    over the reference total; ``notes``: what the fit cannot follow; ``extra``: the fit's values."""

    target_tau: float
    fitted_tau: float
    membrane_error: float
    counts: dict[str, tuple[int, int]]
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    labels: tuple[str, str] = ("LIF", "circuit")

    @property
    def tau_error(self) -> float:
        return abs(self.fitted_tau - self.target_tau) / self.target_tau

    @property
    def count_error(self) -> float:
        ref = sum(a for a, _ in self.counts.values())
        return sum(abs(a - b) for a, b in self.counts.values()) / max(ref, 1)

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {a} vs {b}" for k, (a, b) in self.counts.items())
        ref, model = self.labels
        return (f"tau {self.fitted_tau:.4g} s vs {self.target_tau:.4g} s ({100 * self.tau_error:.2f} %), membrane "
                f"error {100 * self.membrane_error:.2f} % of the threshold, spike counts ({ref} vs {model}) {counts} "
                f"(error {100 * self.count_error:.1f} %)" + (f"; {self.notes}" if self.notes else ""))

    def as_metadata(self, prefix: str) -> dict[str, float | str]:
        """Scalars and strings for a NIR graph's metadata (HDF5 attributes)."""
        out: dict[str, float | str] = {f"{prefix}target_tau": float(self.target_tau),
                                       f"{prefix}fitted_tau": float(self.fitted_tau),
                                       f"{prefix}tau_error": float(self.tau_error),
                                       f"{prefix}membrane_error": float(self.membrane_error),
                                       f"{prefix}count_error": float(self.count_error),
                                       f"{prefix}summary": self.summary()}
        out.update({f"{prefix}{k}": float(v) for k, v in self.extra.items()})
        return out


def euler_lif(p: LIFParams, current: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """memsim's digital LIF (:class:`memsim.interop.nir_neurons.LIF`) on ``current`` ``[T, ...]``: (v, spikes)."""
    v = np.zeros(current.shape[1:])
    vs, zs = [], []
    for x in current:
        v = v + dt / p.tau * (p.v_leak - v + p.r * x)
        z = v > p.v_threshold
        v = np.where(z, p.v_reset, v)
        vs.append(v.copy())
        zs.append(z.astype(float))
    return np.array(vs), np.array(zs)


def _tau_from_step(v: np.ndarray, v0: float, v_inf: float, dt: float) -> float:
    """The time constant of a first-order step response ``v_n = v_inf + (v0 - v_inf) e^{-(n+1) dt / tau}``
    (log-linear fit on the part more than 2 % of the way from the end)."""
    rest = (v_inf - v) / (v_inf - v0)
    keep = rest > 0.02
    t = (np.arange(len(v)) + 1.0) * dt
    slope = np.polyfit(t[keep], np.log(rest[keep]), 1)[0]
    return -1.0 / slope


def _positive(name: str, value: float, fix: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(name, value, "a positive finite number", fix)
    return float(value)


# ----------------------------------------------------------------------------------------------------------------
# LIF -> vLIF circuit

@dataclass(frozen=True)
class VLIFFit:
    """A LIF mapped onto a vLIF card: ``card`` (time-scaled), ``circuit_dt`` (the circuit's step, s; ``per_step``
    of them per graph step), ``scale`` (V of membrane per unit of LIF potential above ``v_leak``), ``gain`` (A of
    circuit input per unit of LIF input) and the measured ``report``."""

    lif: LIFParams
    card: NeuronCard
    circuit_dt: float
    per_step: int
    scale: float
    gain: float
    report: FitReport


def _vlif_card(card, where: str) -> NeuronCard:
    card = card if isinstance(card, NeuronCard) else load_neuron_card(card)
    if card.type != "vlif":
        raise ParameterError(where, card.name, "a neuron card of type 'vlif' (e.g. 'vlif_neuron')",
                             "NIR LIF nodes map onto vLIF circuits (threshold switch + load + capacitor); a MIF "
                             "neuron has no threshold or leak parameters to fit")
    return card


def _check_lif(p: LIFParams, dt: float, where: str) -> float:
    """The continuous time constant of the Euler LIF, or an error naming the parameter outside the fittable range."""
    _positive(f"{where}.tau", p.tau, "give the membrane time constant in s")
    if p.tau <= dt:
        raise ParameterError(f"{where}.tau", p.tau, f"tau > dt = {dt:g} s (the fittable range: at tau <= dt the "
                             f"Euler LIF has beta = 1 - dt/tau <= 0, which no RC membrane has)",
                             "use the digital neurons (neurons='digital') for this node")
    if not p.r > 0:
        raise ParameterError(f"{where}.r", p.r, "r > 0", "a vLIF circuit integrates its input with a positive gain")
    if not p.v_threshold > p.v_leak:
        raise ParameterError(f"{where}.v_threshold", p.v_threshold, f"above v_leak = {p.v_leak:g}",
                             "a vLIF fires above its rest voltage; use the digital neurons for this node")
    span = p.v_threshold - p.v_leak
    if abs(p.v_reset - p.v_leak) > 1e-6 * span:
        raise ParameterError(f"{where}.v_reset", p.v_reset, f"v_reset = v_leak = {p.v_leak:g} (the fittable range: "
                             "a vLIF's reset is the discharge through its switch to its rest voltage)",
                             "use the digital neurons (neurons='digital') for this node")
    return -dt / math.log1p(-dt / p.tau)


def _scaled_card(card: NeuronCard, tau_c: float, dt: float) -> NeuronCard:
    """The card's circuit with its membrane leak ``(R_off + R_L) C`` at ``tau_c`` (every resistance times the
    same factor, C kept) and a switching time of one graph step (at most ``tau_c / 10``, at least the
    card's ratio to the leak), so that a spike and its discharge take about one step. The switch's voltages
    (v_on, v_off, k) are the card's: without its hysteresis (v_off < v_on) the circuit does not fire at all."""
    (mem,) = card.memristors
    pc, pm = card.parameters, mem.parameters
    f = tau_c / ((pm["R_off"] + pc["R_L"]) * pc["C"])
    tau_sw = max(min(dt, tau_c / 10.0), pm["tau"] * f)
    card = dataclasses.replace(card, dt=_DT_FRACTION * tau_sw)  # the card's documented step, at the new scale
    return card.with_parameters(R_L=pc["R_L"] * f, tau_s=tau_sw, M1_R_on=pm["R_on"] * f, M1_R_off=pm["R_off"] * f,
                                M1_tau=tau_sw)


def _circuit_dt(card: NeuronCard, dt: float) -> tuple[float, int]:
    (mem,) = card.memristors
    limit = min(_DT_FRACTION * mem.parameters["tau"], dt)
    per_step = max(1, math.ceil(dt / limit - 1e-9))
    return dt / per_step, per_step


def run_circuit(dyn: NeuronDynamics, per_step: int, current: torch.Tensor, scale: float = 1.0,
                v_leak: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The circuit ``dyn`` under the input currents ``current`` ``[T, B, N]`` (A) held over each graph step of
    ``per_step`` circuit steps: (membrane voltage / ``scale`` + ``v_leak`` at each step's end, spikes: 1 where the
    switch fired during the step), each ``[T, B, N]``."""
    T, B, N = current.shape
    y = dyn.initial_state(B, N, current.dtype, current.device)
    vs, zs = [], []
    for n in range(T):
        fired = torch.zeros(B, N, dtype=current.dtype, device=current.device)
        for _ in range(per_step):
            y_new = dyn.advance(current[n], y, n)
            fired = torch.maximum(fired, dyn.spike(y, y_new))
            y = y_new
        vs.append(y[..., 0] / scale + v_leak)
        zs.append(fired)
    return torch.stack(vs), torch.stack(zs)


def _fire_level(card: NeuronCard, circuit_dt: float, tau_c: float) -> float:
    """The membrane voltage the circuit's smallest firing DC input settles towards: one batched run of DC inputs
    whose settling voltages ``I (R_off + R_L)`` step by 1.25 % from 0.5 to 10 x v_on, over 8 time constants."""
    (mem,) = card.memristors
    r_tot = mem.parameters["R_off"] + card.parameters["R_L"]
    dyn = NeuronDynamics(card, dt=circuit_dt)
    steps = math.ceil(8 * tau_c / circuit_dt)
    v_on = mem.parameters["v_on"]
    levels = 0.5 * v_on * torch.logspace(0.0, math.log10(20.0), 241, dtype=torch.float64)
    with torch.no_grad():
        out = dyn.run((levels / r_tot).view(1, 1, -1).expand(steps, 1, -1))
    fired = out.spikes.sum(0)[0] > 0
    if not bool(fired.any()) or bool(fired[0]):
        raise ParameterError("card", card.name, "a vLIF card that fires at a DC input settling between 0.5 and "
                             "10 x v_on", "check the card's threshold switch (v_on, R_on, R_off)")
    return float(levels[int(torch.nonzero(fired)[0])])


def standard_stimuli(p: LIFParams, dt: float, steps: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """LIF input currents ``[steps]``: the subthreshold step of the membrane check (half the rheobase); DC steps at
    1.5 and 3 x the rheobase; and a Poisson pulse train (a pulse in 20 % of the steps, seeded) whose pulses each
    carry a third of, or all of, the charge to threshold."""
    rheobase = (p.v_threshold - p.v_leak) / p.r
    rng = np.random.default_rng(seed)
    pulses = (rng.random(steps) < 0.2).astype(float)
    one_step = (p.v_threshold - p.v_leak) * p.tau / (dt * p.r)
    return {"subthreshold step": np.full(steps, 0.5 * rheobase), "DC 1.5x rheobase": np.full(steps, 1.5 * rheobase),
            "DC 3x rheobase": np.full(steps, 3 * rheobase), "pulses of 1/3 threshold": pulses * one_step / 3.0,
            "pulses of 1 threshold": pulses * one_step}


def fit_vlif(p: LIFParams, dt: float, card="vlif_neuron", *, where: str = "LIF") -> VLIFFit:
    """Map the LIF ``p`` (integrated at the graph step ``dt``) onto ``card``'s circuit and measure the error on
    :func:`standard_stimuli` against memsim's digital LIF; an error names a parameter outside the fittable range.

    The voltage scale (where the LIF's threshold sits on the membrane) is chosen among 9 values from the switch's
    ``v_on`` (where a fast transient fires it) to the DC firing level (where a sustained input does), the one with
    the smallest spike-count error on the standard stimuli. ``fitted_tau`` is measured on a small step (settling at
    a tenth of ``v_on``, the circuit's linear range) against the closed form; ``membrane_error`` on the
    half-threshold step, where the switch's leak is no longer linear."""
    dt = _positive("dt", dt, "give the graph's time step in s")
    card = _vlif_card(card, "card")
    tau_c = _check_lif(p, dt, where)
    scaled = _scaled_card(card, tau_c, dt)
    circuit_dt, per_step = _circuit_dt(scaled, dt)
    mem = scaled.memristors[0].parameters
    r_tot = mem["R_off"] + scaled.parameters["R_L"]
    v_fire = _fire_level(scaled, circuit_dt, tau_c)
    span = p.v_threshold - p.v_leak
    scales = np.geomspace(mem["v_on"], max(v_fire, mem["v_on"]), 9) / span
    stimuli = standard_stimuli(p, dt)
    stimuli["small step"] = np.full(len(stimuli["subthreshold step"]), 0.1 * mem["v_on"] / (scales[0] * p.r))
    x = torch.as_tensor(np.stack(list(stimuli.values()), -1), dtype=torch.float64)  # [T, S]
    gains = torch.as_tensor(scales * p.r / r_tot, dtype=torch.float64)
    dyn = NeuronDynamics(scaled, dt=circuit_dt)
    with torch.no_grad():  # batch: the 9 scales x the stimuli, one run
        v_c, z_c = run_circuit(dyn, per_step, x.unsqueeze(1) * gains.view(1, -1, 1), 1.0, 0.0)
    v_c = v_c.numpy() / scales.reshape(1, -1, 1) + p.v_leak
    v_ref, z_ref = euler_lif(p, x.numpy(), dt)
    names = list(stimuli)
    spiking = [j for j, k in enumerate(names) if k not in ("subthreshold step", "small step")]
    errors = np.abs(z_c.numpy()[:, :, spiking].sum(0) - z_ref[:, spiking].sum(0)).sum(-1)
    best = int(np.argmin(errors))
    scale = float(scales[best])
    gain = scale * p.r / r_tot
    counts = {names[j]: (int(z_ref[:, j].sum()), int(z_c[:, best, j].sum())) for j in spiking}
    sub = names.index("subthreshold step")
    small = names.index("small step")
    v_small = v_c[:, 0, small]  # scale 0: the step settles at v_on / 10 on the membrane
    report = FitReport(
        target_tau=tau_c, fitted_tau=_tau_from_step(v_small, 0.0, p.v_leak + float(x[0, small]) * p.r, dt),
        membrane_error=float(np.max(np.abs(v_c[:, best, sub] - v_ref[:, sub]))) / span, counts=counts,
        notes="a vLIF circuit has no limit cycle: it fires once per input transient, not repeatedly under a "
              "sustained input",
        extra={"scale_V": scale, "gain_A": gain, "fire_level_V": v_fire, "time_scale": tau_c / (
            (card.memristors[0].parameters["R_off"] + card.parameters["R_L"]) * card.parameters["C"]),
            "switch_tau": mem["tau"], "per_step": per_step})
    return VLIFFit(p, scaled, circuit_dt, per_step, scale, gain, report)


# ----------------------------------------------------------------------------------------------------------------
# MIF circuit -> LIF

@dataclass(frozen=True)
class MIFFit:
    """A MIF card as a LIF at ``dt``: ``lif`` (``r`` in V/A: the input is the circuit's current in A),
    ``amplitude`` (V: the membrane excursion a spike stands for, :math:`V - V_{rest} \approx A z`), ``rest`` (V)
    and the measured ``report`` (``extra['drive_error']``: the relative error of that replacement of the mean
    drive; ``extra['li_error']``: the relative L2 error of the membrane as an LI, ``lif`` without threshold)."""

    lif: LIFParams
    amplitude: float
    rest: float
    report: FitReport


def _mif_stimuli(rheobase: float, dt: float, tau_c: float, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"subthreshold step": np.full(steps, 0.5 * rheobase)}
    for k in (1.5, 3.0, 10.0, 30.0, 100.0):
        out[f"DC step {k:g}x rheobase"] = np.full(steps, k * rheobase)
    pulses = (rng.random(steps) < 0.3).astype(float)
    for k in (3.0, 10.0):
        out[f"pulse train {k:g}x rheobase"] = pulses * k * rheobase * max(1.0, tau_c / dt)
    return out


def fit_mif(card="mif_neuron", dt: float | None = None, *, steps: int = 30) -> MIFFit:
    """A LIF at ``dt`` fitted to ``card``'s MIF circuit (integrated with RK4 as :class:`memsim.nn.MIFNeuron`)."""
    card = card if isinstance(card, NeuronCard) else load_neuron_card(card)
    if card.type != "mif":
        raise ParameterError("card", card.name, "a neuron card of type 'mif'", "the LIF approximation is of MIF "
                             "neurons")
    dyn = NeuronDynamics(card, dt=dt)
    dt = dyn.dt
    p, devs = dyn.p, dyn.devices
    g = [float(dyn.circuit.family.conductance(TORCH, d, torch.tensor(x, dtype=torch.float64)))
         for d, x in zip(devs, dyn.x0[1:])]
    g_r = g[0] + g[1]
    rest = (g[0] * float(p.E1) + g[1] * float(p.E2)) / g_r
    tau_c = float(p.C) / g_r
    tau = dt / -math.expm1(-dt / tau_c)
    threshold = float(dyn.rule.level)
    rheobase = (threshold - rest) * g_r
    stimuli = _mif_stimuli(rheobase, dt, tau_c, steps)
    x = torch.as_tensor(np.stack(list(stimuli.values()), -1), dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        out = dyn.run(x)
    v_mif, z_mif = out.v[:, 0].numpy(), out.spikes[:, 0].numpy()
    # the drive the next layer integrates: the mean excursion per stimulus, to be replaced by A x the spike rate
    excursion = v_mif - rest
    e = excursion.mean(0)
    best = None
    floor = float(p.E1) - (threshold - float(p.E1))
    for v_th in rest + (threshold - rest) * np.array([0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 16.0]):
        for v_reset in np.linspace(floor, v_th, 25)[:-1]:
            lif = LIFParams(tau, 1.0 / g_r, rest, float(v_th), float(v_reset))
            _, z = euler_lif(lif, x[:, 0].numpy(), dt)
            m = z.mean(0)
            if not m.any():
                continue
            amp = float((e * m).sum() / (m * m).sum())
            err = float(((e - amp * m) ** 2).sum())
            if best is None or err < best[0] - 1e-15:
                best = (err, lif, z, amp)
    err, lif, z_lif, amplitude = best
    v_lif, _ = euler_lif(lif, x[:, 0].numpy(), dt)
    drive_error = math.sqrt(err / float((e * e).sum()))
    # the alternative without spikes: the membrane as a leaky integrator (NIR's LI), its output the voltage itself
    v_li, _ = euler_lif(LIFParams(tau, 1.0 / g_r, rest, math.inf, rest), x[:, 0].numpy(), dt)
    li_error = float(np.linalg.norm(v_li - v_mif) / np.linalg.norm(excursion))
    counts = {k: (int(z_mif[:, j].sum()), int(z_lif[:, j].sum())) for j, k in enumerate(stimuli) if j > 0}
    sub = v_mif[:, 0]
    # the time constant: a small step over 3 tau_c at steps of tau_c / 20 (the circuit's response vs the closed form)
    fine = NeuronDynamics(card, dt=tau_c / 20)
    with torch.no_grad():
        v_fine = fine.run(torch.full((60, 1, 1), 0.1 * rheobase, dtype=torch.float64), spikes=False).v[:, 0, 0]
    report = FitReport(
        target_tau=tau_c, fitted_tau=_tau_from_step(v_fine.numpy(), float(p.V0), rest + 0.1 * rheobase / g_r,
                                                    tau_c / 20),
        labels=("MIF", "LIF"), membrane_error=float(
            np.max(np.abs(sub - v_lif[:, 0])) / (threshold - rest)), counts=counts,
        notes="the next layer sees A z instead of the MIF's analog membrane voltage (drive error: the relative "
              "error of its mean over the stimuli)",
        extra={"amplitude_V": amplitude, "v_reset_V": lif.v_reset, "rest_V": rest, "drive_error": drive_error,
               "li_error": li_error, "lif_tau": tau, "v_threshold_V": lif.v_threshold})
    return MIFFit(lif, amplitude, rest, report)


def warn_if_inexact(report: FitReport, what: str) -> None:
    """A :class:`NIRFitWarning` stating the measured error when the spike counts differ by more than
    :data:`COUNT_WARNING` on the standard stimuli."""
    if report.count_error > COUNT_WARNING:
        warnings.warn(f"{what}: the fit is approximate: {report.summary()}", NIRFitWarning, stacklevel=3)
