r"""Calibrating a programmed chip's converters: the DAC input range and the ADC full scale of every crossbar layer.

A real macro sets its converter ranges from the signal, once per chip, on a calibration batch (CrossSim
profiles each layer's ADC inputs and clips at a percentile; NeuroSim sizes them from the partial sums). The
preset says how, per converter (``[dac]`` / ``[adc]`` ``calibration``, ``percentile``; ``[adc] granularity``):

* ``"percentile"`` (default): the nearest-rank percentile :math:`P_p` of the magnitudes seen,
* ``"max"``: the largest magnitude seen (:math:`p = 100`),
* ``"fixed"``: no measurement: the DAC keeps its running maximum (set in training, else the batch's maximum,
  as before calibration existed); the ADC's full scale is ``adc.range * rows * v_max * (g_max - g_min)``.

For a layer with inputs :math:`x` and tile column outputs :math:`I_{t,j}` (after the pair / reference column
subtraction, before the ADC, every input and weight slice; :math:`t` a tile) over the calibration batch:

.. math::  s_x = P_{p_{dac}}\big(|x|\big), \qquad
           I_{fs} = P_{p_{adc}}\big(|I_{t,j}|\big)_{t,j}\ \ (\text{granularity "layer"}), \qquad
           I_{fs,t} = P_{p_{adc}}\big(|I_{t,j}|\big)_{j}\ \ (\text{"tile"}).

The column outputs are recorded during one forward pass with the ADC bypassed (so later layers see unclipped
signals, as in CrossSim's profiling) and the DAC at each read's own maximum :math:`m`; they are stored as
:math:`I \cdot m` and divided by the final :math:`s_x`, which is exact in the linear modes (:math:`I \propto V
\propto 1/s`). Large records are subsampled (a fixed-seed random subset of up to 2**18 values per read, shared by
the groups, at least 4096 each; the maximum is exact), so calibrating costs about one extra forward pass of the
calibration batch (5-10 % of evaluating 10 000 images after a 256-image calibration). A percentile that comes
out 0 (a signal that is almost always zero) gives the maximum instead; a tile that saw no signal at all gets the
fixed rule's full scale; a layer that saw only zero inputs is an error.

The ranges are buffers of each layer (``input_scale``, ``adc_full_scale``; :class:`ConverterRanges`, the base
of the crossbar layers), saved in ``state_dict`` with the network: a calibrated chip is saved with it. In
training mode (hardware-aware training programs a chip every step) they follow the batch - the DAC as a running
maximum, the ADC as the batch's own statistic, tracked as a running value too - so training needs no
calibration call. In eval mode a layer whose preset asks for ``"percentile"`` or ``"max"`` and whose range was
never set raises :class:`memsim.errors.CalibrationError` before it reads.

Typical use, once per programmed chip::

    net = memsim.convert(model, "hfox_1t1r_64").eval()
    report = calibrate(net, lambda: net(train_images[:256]))
    print(report.summary())
    accuracy = evaluate(net, test_set)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..crossbar.periphery import SignalRecord
from ..errors import CalibrationError

__all__ = ["calibrate", "require_calibrated", "reset_calibration", "crossbar_layers", "CalibrationReport",
           "ConverterRanges"]


class _Recording:
    """What a calibration pass records in one layer: the DAC's inputs and the ADC's (None: not measured)."""

    def __init__(self, dac: SignalRecord | None, adc: SignalRecord | None):
        self.dac, self.adc, self.reads = dac, adc, 0


class ConverterRanges(nn.Module):
    """The converter ranges of a crossbar layer (the base of :mod:`memsim.nn.crossbar`'s layers): the buffers
    ``input_scale`` (DAC input range, input units) and ``adc_full_scale`` (A, shape ``array.adc_shape``), how
    training tracks them, how an eval read gets them, and the recording of a calibration pass (module doc).

    The layer provides ``preset``, ``array`` (a :class:`memsim.crossbar.CrossbarArray`), ``scale_momentum`` and
    ``_program(weight)`` (the programmed chip), and calls :meth:`_init_ranges` once they exist."""

    def _init_ranges(self) -> None:
        self.register_buffer("input_scale", torch.zeros(()))
        self.register_buffer("adc_full_scale", torch.zeros(self.array.adc_shape))
        self._record: _Recording | None = None

    @property
    def calibrating(self) -> bool:
        """True while a calibration pass records this layer's signals. Setting it True, running the calibration
        batch and setting it False calibrates the layer (the older spelling of
        :func:`memsim.nn.calibration.calibrate`, which also names the layers and returns the report)."""
        return self._record is not None

    @calibrating.setter
    def calibrating(self, on: bool) -> None:
        if on and self._record is None:
            self._begin_recording()
        elif not on and self._record is not None:
            self._finish_recording() if self._recorded() else self._abort_recording()

    def _dac_method(self) -> str:
        """How the DAC range is set; an ideal DAC (no [dac]) keeps the running maximum, as "fixed" does."""
        return self.preset.dac.calibration if self.preset.dac is not None else "fixed"

    def _adc_measured(self) -> bool:
        """True when the ADC's full scale comes from the signal (a quantised mode, an ADC, not "fixed")."""
        adc = self.preset.adc
        return self.array.quantised and adc is not None and adc.calibration != "fixed"

    def _track_dac(self, x: torch.Tensor) -> torch.Tensor:
        """Training: the running maximum of ``|x|`` (momentum ``scale_momentum``), the DAC range of this step."""
        lo, hi = torch.aminmax(x.detach())  # max |x| in one pass, without a temporary |x|
        batch_max = torch.maximum(-lo, hi)
        with torch.no_grad():
            if self.input_scale.item() == 0:
                self.input_scale.copy_(batch_max)
            else:
                self.input_scale.mul_(self.scale_momentum).add_((1 - self.scale_momentum) * batch_max)
        s = self.input_scale if self.input_scale.item() > 0 else batch_max
        return s.to(x.dtype)

    def _track_adc(self, y: torch.Tensor) -> torch.Tensor:
        """Training: this batch's ADC full scale (per the preset), also tracked as a running value in the buffer."""
        stat = self.array.adc_range(y)
        with torch.no_grad():
            buf = self.adc_full_scale
            if buf.shape != stat.shape or not bool(buf.all()):
                self.adc_full_scale = stat.to(buf.dtype).clone()
            else:
                buf.mul_(self.scale_momentum).add_((1 - self.scale_momentum) * stat.to(buf.dtype))
        return stat

    def _uncalibrated(self) -> tuple[str, str] | None:
        """``(converter, why)`` when an eval read would need a range that was never measured, else None."""
        if not self.array.quantised:
            return None
        if self._dac_method() != "fixed" and float(self.input_scale) <= 0:
            return "dac", (f"its DAC input range was never calibrated (dac.calibration = "
                           f"'{self._dac_method()}' on preset '{self.preset.name}')")
        if self._adc_measured() and (self.adc_full_scale.shape != self.array.adc_shape
                                     or not bool((self.adc_full_scale > 0).all())):
            return "adc", (f"its ADC full scale was never calibrated (adc.calibration = "
                           f"'{self.preset.adc.calibration}', granularity '{self.preset.adc.granularity}' on "
                           f"preset '{self.preset.name}')")
        return None

    def _eval_ranges(self, x: torch.Tensor):
        """The DAC range and ADC full scale of an eval read; :class:`CalibrationError` when one is missing."""
        missing = self._uncalibrated()
        if missing:
            conv, why = missing
            raise CalibrationError(f"{type(self).__name__} ({self.extra_repr()}): {why}. Fix: calibrate the "
                                   f"programmed chip first, memsim.nn.calibration.calibrate(model, lambda: "
                                   f"model(calibration_batch)), or set [{conv}] calibration = \"fixed\" in the "
                                   f"preset")
        s = self.input_scale if float(self.input_scale) > 0 else x.detach().abs().max()  # "fixed": batch max
        adc = None
        if self.preset.adc is not None:
            adc = self.adc_full_scale if self._adc_measured() else self.array.fixed_full_scale()
        return s.to(x.dtype), adc

    def reset_calibration(self) -> None:
        """Forget the DAC input range and the ADC full scale (see :func:`memsim.nn.calibration.reset_calibration`)."""
        with torch.no_grad():
            self.input_scale.zero_()
            self.adc_full_scale = torch.zeros(self.array.adc_shape, dtype=self.adc_full_scale.dtype,
                                              device=self.adc_full_scale.device)

    # -- calibration pass -----------------------------------------------------------------
    def _begin_recording(self) -> None:
        measure_dac = self._dac_method() != "fixed" or float(self.input_scale) <= 0
        self._record = _Recording(SignalRecord() if measure_dac else None,
                                  SignalRecord() if self._adc_measured() else None)

    def _recorded(self) -> bool:
        return self._record is not None and self._record.reads > 0

    def _abort_recording(self) -> None:
        self._record = None

    def _recording_read(self, x2: torch.Tensor, weight2: torch.Tensor) -> torch.Tensor:
        """A read of the programmed chip that records the converters' inputs: the DAC at this read's own maximum
        (or its fixed range), the ADC bypassed; the column outputs are kept as ``I * s`` (module doc of
        :mod:`memsim.nn.calibration`)."""
        rec = self._record
        rec.reads += 1
        a = x2.detach().abs()
        if rec.dac is not None:
            rec.dac.add(a.reshape(1, -1))
            s = a.max()
        else:
            s = self.input_scale
        s = s.to(x2.dtype).clamp_min(torch.finfo(x2.dtype).tiny)
        if self.array.mode == "ideal":
            return F.linear(x2, weight2)

        def observe(y: torch.Tensor):
            if rec.adc is not None:
                rec.adc.add(self.array.adc_groups(y.detach().abs() * s))
                return None  # read on unconverted: later layers see unclipped signals while this ADC is measured
            # an ADC that is not calibrated ("fixed") converts as it will in evaluation, so the next layer's DAC
            # range is measured on the signal it will really get
            return self.array.fixed_full_scale() if self.preset.adc is not None else None

        g, ws = self._program(weight2)
        return self.array(weight2, x2, s, g=g, w_scale=ws, adc_scale=observe)

    def _finish_recording(self) -> dict:
        """Set the ranges from the recorded signals; returns this layer's entry of the calibration report."""
        rec, self._record = self._record, None
        p, dac_method = self.preset, self._dac_method()
        entry = {"dac_method": dac_method, "dac_percentile": None, "dac_clipped_fraction": 0.0,
                 "adc_method": "ideal" if not self.array.quantised else (p.adc.calibration if p.adc else "none"),
                 "percentile": None, "granularity": p.adc.granularity if p.adc else None,
                 "adc_full_scale": None, "clipped_fraction": 0.0}
        with torch.no_grad():
            if rec.dac is not None:
                s = self._dac_range(rec.dac, dac_method)
                self.input_scale.fill_(s)
                if dac_method == "percentile":
                    entry["dac_percentile"] = p.dac.percentile
                entry["dac_clipped_fraction"] = rec.dac.clipped_fraction(torch.tensor(s, dtype=torch.float64))
            s_x = float(self.input_scale)
            entry["dac_scale"] = s_x
            if s_x <= 0 and self.array.quantised and (dac_method != "fixed" or rec.adc is not None):
                raise CalibrationError(f"{type(self).__name__} ({self.extra_repr()}): the calibration batch gave "
                                       f"this layer only zero inputs, so its converter ranges cannot be measured. "
                                       f"Fix: calibrate on a batch of real inputs (a layer that never sees a "
                                       f"non-zero input is dead: check the network)")
            if rec.adc is not None:
                recorded = rec.adc.statistic(p.adc.calibration, p.adc.percentile, p.adc.bits)  # in units of A * s
                fixed = self.array.fixed_full_scale()
                fs = torch.where(recorded > 0, recorded / s_x, torch.full_like(recorded, fixed))
                self.adc_full_scale = fs.reshape(self.array.adc_shape).to(self.adc_full_scale)
                entry["percentile"] = p.adc.percentile if p.adc.calibration == "percentile" else None
                entry["clipped_fraction"] = rec.adc.clipped_fraction(fs * s_x)
            if p.adc is not None and self.array.quantised:
                if rec.adc is None:  # "fixed": the buffer holds the rule's value, for the record
                    self.adc_full_scale = torch.full(self.array.adc_shape, self.array.fixed_full_scale(),
                                                     dtype=self.adc_full_scale.dtype,
                                                     device=self.adc_full_scale.device)
                entry["adc_full_scale"] = self.adc_full_scale.tolist()
        return entry

    def _dac_range(self, record: SignalRecord, method: str) -> float:
        """The DAC input range from the recorded ``|x|``: "fixed" replays the running maximum over the reads."""
        if method == "fixed":
            s = 0.0
            for m in record.read_maxima:
                s = float(m[0]) if s == 0 else self.scale_momentum * s + (1 - self.scale_momentum) * float(m[0])
            return s
        return float(record.statistic(method, self.preset.dac.percentile, self.preset.dac.bits)[0])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """A state saved before converter calibration existed has no ``adc_full_scale``: loaded uncalibrated. A
        saved full scale of another layout (granularity, tiles) takes its shape; the eval read then reports it."""
        key = prefix + "adc_full_scale"
        saved = state_dict.get(key)
        if saved is not None and saved.shape != self.adc_full_scale.shape:
            self.adc_full_scale = torch.zeros(saved.shape, dtype=self.adc_full_scale.dtype,
                                              device=self.adc_full_scale.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if saved is None and key in missing_keys:
            missing_keys.remove(key)
            with torch.no_grad():
                self.adc_full_scale.zero_()



def crossbar_layers(model: nn.Module) -> list[tuple[str, ConverterRanges]]:
    """``(qualified name, layer)`` of every crossbar layer of ``model`` (the model itself included), in order."""
    return [(name or type(m).__name__, m) for name, m in model.named_modules() if isinstance(m, ConverterRanges)]


class CalibrationReport:
    """What :func:`calibrate` set, per layer name: ``dac_scale`` (input units), ``dac_method``,
    ``dac_percentile``, ``dac_clipped_fraction``, ``adc_full_scale`` (A: a float, or one per tile as a nested
    list ``[row tile][column tile]`` with granularity "tile"), ``adc_method``, ``percentile`` (the ADC's, None
    unless "percentile"), ``granularity``, ``clipped_fraction`` (share of the recorded ADC inputs beyond the full
    scale). Layers in ``ideal`` mode (no converters) are listed with methods "ideal"."""

    def __init__(self, layers: dict[str, dict]):
        self.layers = dict(layers)

    def __getitem__(self, name: str) -> dict:
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def as_dict(self) -> dict[str, dict]:
        """JSON-able copy (floats, lists, strings, None)."""
        return {name: dict(entry) for name, entry in self.layers.items()}

    def summary(self) -> str:
        """One line per layer, for the command line."""
        lines = []
        for name, e in self.layers.items():
            if e["adc_method"] == "ideal":
                lines.append(f"{name}: ideal (no converters)")
                continue
            fs = e["adc_full_scale"]
            if isinstance(fs, list):
                flat = [v for row in fs for v in row]
                adc = f"{min(flat):.3g}..{max(flat):.3g} A over {len(flat)} tiles" if flat else "-"
            else:
                adc = "-" if fs is None else f"{fs:.3g} A"
            lines.append(f"{name}: DAC range {e['dac_scale']:.4g} ({_method(e['dac_method'], e['dac_percentile'])}),"
                         f" ADC full scale {adc} ({_method(e['adc_method'], e['percentile'])}), "
                         f"{100 * (e['clipped_fraction'] or 0.0):.3g} % of column outputs clipped")
        return "\n".join(lines) if lines else "no crossbar layers"

    def __repr__(self) -> str:
        return f"CalibrationReport({len(self.layers)} layers)"


def _method(method: str, percentile) -> str:
    return f"percentile {percentile:g}" if method == "percentile" else method


def calibrate(model: nn.Module, forward: Callable[[], object]) -> CalibrationReport:
    """Calibrate every crossbar layer of ``model`` on the signals of ``forward()`` (see the module doc).

    ``model``: programmed (its layers read the chip they will be evaluated on; a layer not yet programmed is
    programmed by this pass, as evaluation would). Its crossbar layers are read in eval mode during the pass and
    restored after; other modules (batch norm) run as the caller left them - put the model in eval mode.
    ``forward``: runs the calibration batch through the model (e.g. ``lambda: model(images[:256])``); it runs
    once, without gradient. Returns the :class:`CalibrationReport`. Raises :class:`CalibrationError` naming a
    layer that ``forward()`` never reached, and re-raises what ``forward()`` raises (leaving the layers as
    they were)."""
    layers = crossbar_layers(model)
    states = [(layer, layer.training) for _, layer in layers]
    for _, layer in layers:
        layer.eval()
        layer._begin_recording()
    try:
        with torch.no_grad():
            forward()
    except BaseException:
        for _, layer in layers:
            layer._abort_recording()
        raise
    finally:
        for layer, was in states:
            layer.train(was)
    report = {}
    try:
        for name, layer in layers:
            if not layer._recorded():
                raise CalibrationError(f"calibration: forward() never ran crossbar layer '{name}', so its converter "
                                       f"ranges cannot be measured. Fix: pass a forward() that runs the calibration "
                                       f"batch through the whole model (e.g. lambda: model(images))", layer=name)
        for name, layer in layers:
            try:
                report[name] = layer._finish_recording()
            except CalibrationError as exc:
                raise CalibrationError(f"crossbar layer '{name}': {exc}", layer=name) from None
    finally:
        for _, layer in layers:  # no layer is left recording, whatever happened
            layer._abort_recording()
    return CalibrationReport(report)


def require_calibrated(model: nn.Module) -> None:
    """Raise :class:`CalibrationError` naming the first crossbar layer of ``model`` whose preset asks for a
    measured converter range ("percentile" or "max") that was never set, and how to fix it. Cheap: reads two
    buffers per layer; call it before an evaluation starts."""
    for name, layer in crossbar_layers(model):
        missing = layer._uncalibrated()
        if missing:
            converter, why = missing
            raise CalibrationError(f"crossbar layer '{name}': {why}. Fix: calibrate the programmed chip first, "
                                   f"memsim.nn.calibration.calibrate(model, lambda: model(calibration_batch)), or "
                                   f"set [{converter}] calibration = \"fixed\" in the preset", layer=name)


def reset_calibration(model: nn.Module) -> None:
    """Forget every crossbar layer's converter ranges (DAC input range and ADC full scale): e.g. before the
    model is programmed as another chip. A later eval read of a "percentile"/"max" layer raises until
    :func:`calibrate` runs again."""
    for _, layer in crossbar_layers(model):
        layer.reset_calibration()

