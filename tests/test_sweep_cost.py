"""The sweep's first-order cost model against hand-computed closed-form values."""
import dataclasses
import math

import pytest
import torch

from memsim.crossbar import CrossbarArray
from memsim.crossbar.presets import load_preset
from memsim.deploy import ArrayActivity, Chip, LayerActivity, adc_conversions_per_read
from memsim.deploy.activity import layer_activity
from memsim.errors import CardError
from memsim.sweep.cost import CostModel, layer_cost, load_cost_model, network_cost

CM = CostModel(name="t", provenance="test", feature_size=40e-9, area_0T1R=4.0, area_1T1R=12.0, t_read=10e-9,
               adc_fom=10e-15, adc_t_bit=1e-9, adc_area_per_level=2e-12, dac_fom=1e-15,
               dac_t_conv=1e-9, dac_area_per_row=5e-12, area_per_column=10e-12)


def test_layer_cost_closed_form():
    # 6 tiles of 64x64 (32 outputs each, 8 per ADC), 300 rows and 100 outputs used per read, 25 reads,
    # sum V^2 G = 2e-3 W
    act = LayerActivity(tiles=6, rows=64, cols=64, outputs_per_tile=32, used_rows=300, used_outputs=100, reads=25,
                        v2g=2e-3, columns_per_adc=8)
    c = layer_cost(CM, act, access="1T1R", dac_bits=8, adc_bits=6)
    assert c["energy_array"] == pytest.approx(10e-9 * 2e-3)                      # 2e-11 J
    assert c["energy_dac"] == pytest.approx(25 * 300 * 1e-15 * 256)              # 1.92e-9 J
    # every output of every tile is converted (6 x 32 per read), not only the 100 that hold weights
    assert c["energy_adc"] == pytest.approx(25 * 6 * 32 * 10e-15 * 64)           # 3.072e-9 J
    assert c["energy"] == pytest.approx(2e-11 + 1.92e-9 + 3.072e-9)
    # per read: DAC settle 1 ns + read 10 ns + 8 sequential 6-bit SAR conversions (48 ns) = 59 ns
    assert c["latency"] == pytest.approx(25 * 59e-9)
    cell = 12 * (40e-9) ** 2                                                      # 1.92e-14 m^2
    assert c["area_cells"] == pytest.approx(6 * 64 * 64 * cell)
    n_adc = 4                                                                     # 32 outputs / 8 per ADC
    assert c["area_periphery"] == pytest.approx(6 * (64 * 10e-12 + 64 * 5e-12 + n_adc * 2e-12 * 64))
    c0 = layer_cost(CM, act, access="0T1R", dac_bits=None, adc_bits=None)         # ideal converters: no cost
    assert c0["energy_dac"] == c0["energy_adc"] == 0.0
    assert c0["latency"] == pytest.approx(25 * 10e-9)
    assert c0["area_cells"] == pytest.approx(c["area_cells"] / 3)                 # 4 F^2 vs 12 F^2


def test_walden_scaling_and_shipped_model():
    cm = load_cost_model()
    assert cm.adc_energy(8) / cm.adc_energy(4) == pytest.approx(16.0)            # 2^bits
    assert cm.adc_energy(6) == pytest.approx(cm.adc_fom * 64)
    assert "Walden" in cm.provenance and "Murmann" in cm.provenance
    with pytest.raises(CardError, match="did you mean 'default'"):
        load_cost_model("defualt")


def test_activity_record_matches_sum_v2_g():
    """Uniform positive weights and full-scale inputs: every used cell pair carries V^2 (G_hi + G_lo) per read, and
    the erased cells of the 6 padding outputs on the driven rows V^2 G_lo each (current flows through them too).
    The record is the array's own opt-in ``activity`` attribute (off by default)."""
    p = load_preset("hfox_1t1r_64")
    p = p.replace(rows=16, cols=16, noise=p.noise.off())
    arr = CrossbarArray(p, 10, 40, mode="noisy")
    assert arr.activity is None
    rec = arr.activity = ArrayActivity()
    w = torch.ones(10, 40)
    x = torch.ones(3, 40)
    arr(w, x, adc_scale=arr.fixed_full_scale())
    lo, hi = p.cell_window()
    v = p.v_max  # x / max|x| = 1 -> the DAC's full scale
    assert rec.vectors == 3
    per_read = 40 * v ** 2 * (10 * (hi + lo) + 6 * 2 * lo)
    assert rec.v2g == pytest.approx(3 * per_read, rel=1e-6)
    act = layer_activity(arr, rec, samples=3)
    # 40 inputs on 16-row tiles -> 3 row tiles; 10 outputs on 8 per tile -> 2 column tiles
    assert (act.tiles, act.used_rows, act.used_outputs, act.reads) == (6, 2 * 40, 3 * 10, 1.0)
    total = network_cost(CM, [act], Chip(p))
    assert total["energy_array"] == pytest.approx(CM.t_read * per_read, rel=1e-6)
    # the ADC converts every output of every tile, the 2 x 3 x 6 padding outputs included: 6 tiles x 8 = 48
    assert act.adc_conversions == 48
    assert total["energy_adc"] == pytest.approx(48 * CM.adc_fom * 2 ** p.adc.bits)


@pytest.mark.parametrize("scheme, per_read", [
    # 784 inputs on 256 rows -> 4 row tiles; 256 outputs on 256 // 2 = 128 pairs per tile -> 2 column tiles:
    # 8 tiles x 128 = 1024 (the 10-output layer after it: 1 tile x 128 = 128, of which 10 hold weights)
    ("differential", 4 * 2 * 128),
    # offset: 255 outputs + the reference column per tile -> ceil(256 / 255) = 2 column tiles: 8 x 255 = 2040
    ("offset", 4 * 2 * 255),
])
def test_adc_conversions_closed_form(scheme, per_read):
    """A 784x256 layer on 256x256 tiles, read twice per inference (two time steps): conversions per inference
    = reads x tiles x outputs per tile, the same count in the cost model, the energy and the deploy figures."""
    p = load_preset("hfox_1t1r_64")
    p = p.replace(rows=256, cols=256, scheme=scheme, noise=p.noise.off())
    arr = CrossbarArray(p, 256, 784, mode="noisy")
    rec = arr.activity = ArrayActivity()
    arr(torch.randn(256, 784), torch.rand(4, 784), adc_scale=arr.fixed_full_scale())   # 2 samples x 2 reads each
    act = layer_activity(arr, rec, samples=2)
    assert (act.tiles, act.outputs_per_tile, act.reads) == (8, per_read // 8, 2.0)
    assert adc_conversions_per_read(act.tiles, act.outputs_per_tile) == per_read
    assert act.adc_conversions == 2 * per_read
    cost = layer_cost(CM, act, access="1T1R", dac_bits=8, adc_bits=6)
    assert cost["energy_adc"] == pytest.approx(2 * per_read * CM.adc_fom * 2 ** 6)


def test_sweep_record_layers_sum_to_the_total(tmp_path):
    """One sweep point of a [64, 16, 10] MLP on 32x32 differential tiles (16 outputs each): layer 1 has 2 row tiles
    x 1 column tile, layer 2 one tile, so 2 x 16 + 16 = 48 conversions per inference (42 outputs hold weights); the
    per-layer figures, the total and the ADC energy all use that count."""
    from sweep_helpers import tiny_ann_checkpoint
    from memsim.sweep.spec import parse_spec
    from memsim.sweep.worker import evaluate_point
    ckpt = tiny_ann_checkpoint(tmp_path)
    spec = parse_spec({"base": {"checkpoint": str(ckpt), "preset": "hfox_1t1r_64", "mode": "noisy", "chips": 1,
                                "limit": 40}, "axes": {"tile.size": [32]}})
    rec = evaluate_point(spec.resolve(spec.points()[0]))
    assert rec["status"] == "ok", rec.get("traceback")
    m = rec["metrics"]
    assert [row["adc_conversions_per_inference"] for row in m["layers"]] == [32, 16]
    assert m["adc_conversions"] == sum(row["adc_conversions_per_inference"] for row in m["layers"]) == 48
    cm = load_cost_model(rec["config"]["cost_model"])
    assert m["energy_adc"] == pytest.approx(48 * cm.adc_energy(6))
    # the deploy code's own per-layer figures (memsim evaluate, mapping_report) are the same count
    from memsim.ann.deploy import mapping_report
    rep = mapping_report(ckpt, load_preset("hfox_1t1r_64").replace(rows=32, cols=32))
    assert [row["adc_conversions_per_inference"] for row in rep["layers"]] == [32, 16]
    assert rep["adc_conversions_per_inference"] == 48


def test_bit_serial_weight_slices_and_adc_sharing_closed_form():
    """6 tiles of 64x64 per weight slice, 2 weight slices (e.g. 4-bit weights on 2-bit cells), an 8-bit DAC applied
    in 4 cycles of 2 bits, 4 of a tile's 32 outputs per ADC: every cycle reads every tile of both slices."""
    act = LayerActivity(tiles=6, rows=64, cols=64, outputs_per_tile=32, used_rows=300, used_outputs=100, reads=25,
                        v2g=2e-3, input_slices=4, weight_slices=2, columns_per_adc=4)
    assert (act.physical_tiles, act.adcs_per_tile, act.conversions_per_adc) == (12, 8, 4)
    assert act.adc_conversions == 25 * 4 * 2 * 6 * 32 == adc_conversions_per_read(6, 32, 4, 2) * 25
    c = layer_cost(CM, act, access="1T1R", dac_bits=8, adc_bits=6)
    assert c["energy_dac"] == pytest.approx(25 * 4 * 2 * 300 * 1e-15 * 2 ** 2)     # 2-bit conversions per cycle
    assert c["energy_adc"] == pytest.approx(25 * 4 * 2 * 6 * 32 * 10e-15 * 2 ** 6)
    # per cycle: DAC 1 ns + read 10 ns + 4 sequential 6-bit conversions (24 ns); 4 cycles per vector, 25 vectors
    assert c["latency"] == pytest.approx(25 * 4 * 35e-9)
    cell = 12 * (40e-9) ** 2
    assert c["area_cells"] == pytest.approx(12 * 64 * 64 * cell)
    assert c["area_periphery"] == pytest.approx(12 * (64 * 10e-12 + 64 * 5e-12 + 8 * 2e-12 * 64))
    # latency follows the sharing and the cycles; the ADC area the number of ADCs
    one_shot = layer_cost(CM, dataclasses.replace(act, input_slices=1, columns_per_adc=1), access="1T1R",
                          dac_bits=8, adc_bits=6)
    assert one_shot["latency"] == pytest.approx(25 * (1e-9 + 10e-9 + 6e-9))
    assert one_shot["area_periphery"] - c["area_periphery"] == pytest.approx(12 * (32 - 8) * 2e-12 * 64)


def test_bit_serial_and_bit_sliced_array_activity():
    """The record of a bit-serial read counts input vectors, not cycles, and sums V^2 G over the cycles: x at full
    scale is the 8-bit code 127, applied in 2-bit cycles as u = 3, 3, 3, 1 (V = v_max u / 3); 4-bit weights of 1 on
    2-bit cells are the code 15 = 3 + 4 * 3, so each weight slice holds the unsliced cells (G_hi, G_lo)."""
    p = load_preset("hfox_1t1r_64")
    p = p.replace(rows=16, cols=16, noise=p.noise.off(), dac=dataclasses.replace(p.dac, slice_bits=2),
                  adc=dataclasses.replace(p.adc, columns_per_adc=4), weight_bits=4, cell_bits=2)
    arr = CrossbarArray(p, 10, 40, mode="noisy")
    rec = arr.activity = ArrayActivity()
    arr(torch.ones(10, 40), torch.ones(3, 40), adc_scale=arr.fixed_full_scale())
    lo, hi = p.cell_window()
    v = p.v_max
    per_cycle_at_v = 40 * v ** 2 * (10 * (hi + lo) + 6 * 2 * lo)     # one weight slice, V = v on every row
    assert rec.vectors == 3
    assert rec.v2g == pytest.approx(3 * 2 * (3 + 1 / 9) * per_cycle_at_v, rel=1e-6)
    act = layer_activity(arr, rec, samples=3)
    assert (act.tiles, act.input_slices, act.weight_slices, act.columns_per_adc, act.reads) == (6, 4, 2, 4, 1.0)
    assert act.adc_conversions == 4 * 2 * 6 * 8                        # cycles x slices x tiles x outputs
    total = network_cost(CM, [act], Chip(p))
    assert total["energy_dac"] == pytest.approx(4 * 2 * 80 * CM.dac_fom * 2 ** 2)
    assert total["latency"] == pytest.approx(4 * (CM.dac_t_conv + CM.t_read + 4 * p.adc.bits * CM.adc_t_bit))


def test_cost_model_file_without_adc_sharing(tmp_path):
    """ADC sharing is the preset's ([adc] columns_per_adc): a cost file that still sets it is refused, naming where
    it went."""
    from memsim.sweep.cost import COST_DIR
    text = (COST_DIR / "default.toml").read_text().replace("[adc]\n", "[adc]\noutputs_per_adc = 8\n")
    (tmp_path / "old.toml").write_text(text)
    with pytest.raises(CardError, match="columns_per_adc in the crossbar preset"):
        load_cost_model(tmp_path / "old.toml")


def test_activity_record_of_a_long_read_matches_a_float64_sum():
    # a conv layer's read holds many cycles (every image patch of a batch): the record sums float32 squares in
    # chunks; against the float64 formula sum_cycles sum_cells V_i^2 G_ij
    g = torch.Generator().manual_seed(3)
    vt = torch.rand(3 * 4096 + 17, 2, 8, generator=g) * 0.2           # [cycles, n_row_tiles, rows] (V)
    cells = torch.rand(2, 3, 8, 5, generator=g) * 1e-4                 # [nr, nc, rows, cols] (S)
    rec = ArrayActivity()
    rec.record(vt, cells, vectors=vt.shape[0])
    exact = float(torch.einsum("bri,rcij->", vt.double() ** 2, cells.double()))
    assert rec.v2g == pytest.approx(exact, rel=1e-7)  # float32 partial sums: ~5e-9 here
    assert rec.vectors == vt.shape[0]
