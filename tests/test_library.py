"""Device cards: every card loads and validates; every kind of bad input is refused clearly, before simulating."""
import math
import tomllib
from pathlib import Path

import pytest
import torch

from memsim import DeviceArray, Sine, list_cards, load_card, pulse_train, PWL
from memsim.errors import CardError, MemsimError, ParameterError, StimulusError
from memsim.devices.cards import DEVICES_DIR, parse_card
from memsim.devices.netlist import subcircuit
from memsim.devices.simulate import torch_trace

CARDS = list_cards()


def card_data(name="hp_tio2_joglekar"):
    with open(DEVICES_DIR / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)


def test_library_has_every_family():
    families = {load_card(n).family.name for n in CARDS}
    assert families >= {"linear_drift_joglekar", "linear_drift_biolek", "linear_drift_prodromakis", "vteam",
                        "yakopcic", "stanford_pku", "metastable_switch"}


@pytest.mark.parametrize("name", CARDS)
def test_card_has_provenance_and_units(name):
    card = load_card(name)
    assert card.provenance.get("doi") or card.provenance.get("source")
    assert card.voltage_range[0] < 0 < card.voltage_range[1]


@pytest.mark.parametrize("name", CARDS)
def test_committed_lib_is_up_to_date(name):
    card = load_card(name)
    lib = card.lib_path()
    assert lib.exists(), f"{lib} missing: run 'memsim device export --all'"
    assert lib.read_text() == subcircuit(card), f"{lib} is stale: run 'memsim device export --all' and commit"


def test_unknown_card_suggests_closest():
    with pytest.raises(CardError, match="hp_tio2_joglekar"):
        load_card("hp_tio2_joglekr")


def test_unknown_family():
    data = card_data()
    data["family"] = "linear_drift_joglekr"
    with pytest.raises(ParameterError, match=r"family.*linear_drift_joglekar"):
        parse_card(data, "bad")


def test_missing_parameter():
    data = card_data()
    del data["parameters"]["mu_v"]
    with pytest.raises(ParameterError, match=r"mu_v.*add the missing"):
        parse_card(data, "bad")


def test_extra_parameter():
    data = card_data()
    data["parameters"]["R_of"] = 1.0
    with pytest.raises(ParameterError, match=r"R_of.*remove or rename"):
        parse_card(data, "bad")


def test_ron_not_below_roff():
    data = card_data()
    data["parameters"]["R_on"] = 20e3
    with pytest.raises(ParameterError) as info:
        parse_card(data, "bad")
    assert info.value.field.endswith("R_on") and "R_off" in str(info.value)


@pytest.mark.parametrize("value", [-100.0, 0.0, math.nan, math.inf])
def test_negative_or_nonfinite_parameter(value):
    data = card_data()
    data["parameters"]["R_on"] = value
    with pytest.raises(ParameterError, match=r"R_on.*allowed \(0, inf\) Ohm"):
        parse_card(data, "bad")


def test_parameter_of_wrong_type():
    data = card_data()
    data["parameters"]["D"] = "10nm"
    with pytest.raises(ParameterError, match=r"D.*SI units"):
        parse_card(data, "bad")


def test_unknown_top_level_key_names_closest():
    data = card_data()
    data["paramters"] = data.pop("parameters")
    with pytest.raises(CardError, match="did you mean 'parameters'"):
        parse_card(data, "bad")


def test_stimulus_outside_valid_voltage():
    data = card_data()
    data["verify"]["amplitude"] = 5.0
    with pytest.raises(ParameterError, match="valid voltage range"):
        parse_card(data, "bad")


def test_invalid_toml_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("name = 'x'\nfamily = \n")
    with pytest.raises(CardError, match="not valid TOML"):
        load_card(bad)


def test_card_from_user_directory(tmp_path, monkeypatch):
    data = (DEVICES_DIR / "hp_tio2_joglekar.toml").read_text().replace('name = "hp_tio2_joglekar"', 'name = "my_dev"')
    (tmp_path / "my_dev.toml").write_text(data.replace("R_on = 100.0", "R_on = 150.0"))
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(tmp_path))
    card = load_card("my_dev")
    assert card.parameters["R_on"] == 150.0 and card.lib_path() == tmp_path / "my_dev.lib"


def test_nan_in_stimulus_is_refused():
    with pytest.raises(StimulusError, match="not finite"):
        PWL([0.0, 1e-3, 2e-3], [0.0, math.nan, 0.0])
    with pytest.raises(StimulusError, match="amplitude"):
        Sine(math.nan, 1.0)


def test_time_step_too_coarse_for_the_stimulus():
    card = load_card("hp_tio2_joglekar")
    with pytest.raises(StimulusError, match=r"too coarse.*Fix: use dt <="):
        torch_trace(card, Sine(1.0, 10.0), dt=0.05)  # 2 points per period
    with pytest.raises(StimulusError, match="too coarse"):
        torch_trace(card, pulse_train(1.0, -1.0, 0.1, 0.01, 0.1, 1), dt=0.02)


def test_per_device_parameter_out_of_range():
    card = load_card("hp_tio2_joglekar")
    with pytest.raises(ParameterError, match="R_on"):
        DeviceArray.from_card(card, (3,), R_on=torch.tensor([100.0, -1.0, 100.0]))
    with pytest.raises(ParameterError, match="broadcastable"):
        DeviceArray.from_card(card, (3,), R_on=torch.tensor([100.0, 120.0]))


def test_all_errors_share_one_root():
    for exc in (CardError, ParameterError, StimulusError):
        assert issubclass(exc, MemsimError)
