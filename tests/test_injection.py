"""Text from files never becomes code (issue: netlist injection).

A card, preset, config or sweep spec is a file people share. ngspice runs the ``shell`` commands of a
``.control`` block, so any line break that reached a netlist from a file's text would let the file run commands.
These tests try every way in: they load files whose strings carry line breaks, carriage returns, Unicode line
separators and direction overrides (refused, naming the field); they render every netlist memsim writes from
objects built in Python with the same hostile text (bypassing the loaders) and check that the netlist has exactly
the lines memsim generates for benign text; and they run ngspice on such a card and check that no file appears.
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat
import tomllib

import numpy as np
import pytest
import torch

from memsim.cli import main
from memsim.crossbar.circuit import TileCircuit, Wires
from memsim.crossbar.netlist import tile_netlist
from memsim.crossbar.presets import load_preset
from memsim.devices.cards import DEVICES_DIR, load_card
from memsim.devices.netlist import device_testbench, subcircuit
from memsim.errors import CardError, ConfigError, MemsimError, ParameterError
from memsim.io import atomic_write_text
from memsim.neurons.cards import load_neuron_card
from memsim.neurons.netlist import neuron_subcircuit
from memsim.neurons.netlist import testbench as neuron_testbench
from memsim.resources import data_dir
from memsim.safetext import check_strings, one_line, spice_comment, spice_name, spice_title
from memsim.scalar import device_source
from memsim.stimuli import Sine

#: ``{marker}`` is replaced by a path that must never come to exist.
HOSTILE = [
    "Strukov 2008\n.control\nshell touch {marker}\n.endc",
    "Strukov 2008\r.control\rshell touch {marker}\r.endc",
    "Strukov 2008\r\n.include /etc/passwd\r\n",
    "Strukov 2008\u2028.control\u2028shell touch {marker}\u2028.endc",
    "Strukov 2008\u2029.control\u2029shell touch {marker}\u2029.endc",
    "Strukov 2008\x85.control\x85shell touch {marker}\x85.endc",
    "Strukov 2008\x0b.control\x0cshell touch {marker}\x1c.endc",
    "Strukov 2008\x00.control",
    "Strukov 2008 \u202e.lortnoc\u202c",
    "\n+ R_on=1e-300\n",
]


def _hostile(marker) -> list[str]:
    return [h.replace("{marker}", str(marker)) for h in HOSTILE]


def _toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a JSON string or number is valid TOML (escapes included)


def _write_toml(path, data: dict) -> None:
    path.write_text("\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items()) + "\n")


def _bundled(kind: str, name: str) -> dict:
    with open(data_dir(kind) / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)


def _assert_same_structure(hostile: str, benign: str) -> None:
    """Every line of the hostile rendering is the benign one's, except comment and title lines, which must
    still be comment and title lines: nothing outside what memsim generates."""
    # str.splitlines splits on every line boundary Python knows (\r, \x0b, \x1c, \x85, \u2028, ...): stricter
    # than ngspice and PySpice, which split on \n
    h_lines, b_lines = hostile.splitlines(), benign.splitlines()
    assert hostile.split("\n") == h_lines + [""]  # no other line boundary hides inside a line
    assert len(h_lines) == len(b_lines)
    for h, b in zip(h_lines, b_lines):
        if b.startswith("*"):
            assert h.startswith("*"), h
        elif b.startswith(".title"):
            assert h.startswith(".title "), h
        else:
            assert h == b
        assert all(ch.isprintable() for ch in h), repr(h)


# ----------------------------------------------------------------------------------------------------------
# the escaping functions

@pytest.mark.parametrize("text", HOSTILE)
def test_comment_and_title_are_one_printable_line(text):
    for line in (spice_comment(text), spice_title(text)):
        assert line.splitlines() == [line] and line.isprintable()
    assert spice_comment(text).startswith("* ") and spice_title(text).startswith(".title ")
    assert "\u202e" not in one_line(text)


@pytest.mark.parametrize("name", ["HP\n.control", "a b", "a.b", "../../etc/x", "1abc", "", "x" * 65, "caf\u00e9",
                                  "\uff41bc", 7, None])
def test_spice_name_refuses_anything_but_an_ascii_identifier(name):
    with pytest.raises(ParameterError, match="card.name"):
        spice_name(name, "card.name")


def test_spice_name_accepts_the_library_names():
    for path in DEVICES_DIR.glob("*.toml"):
        assert spice_name(path.stem.upper(), "name") == path.stem.upper()


# ----------------------------------------------------------------------------------------------------------
# the loaders refuse control characters in every string, naming the field

@pytest.mark.parametrize("text", HOSTILE)
def test_device_card_with_hostile_provenance_is_refused_naming_the_field(tmp_path, text):
    data = _bundled("devices", "hp_tio2_joglekar")
    data["provenance"]["source"] = text.replace("{marker}", str(tmp_path / "pwned"))
    _write_toml(tmp_path / "evil.toml", data)
    with pytest.raises(CardError, match=r"evil\.provenance\.source: the text holds U\+"):
        load_card(tmp_path / "evil.toml")


def test_hostile_strings_anywhere_in_a_card_are_refused(tmp_path):
    data = _bundled("devices", "hp_tio2_joglekar")
    for where, mutate in [("evil.description", lambda d: d.update(description="a\nb")),
                          ("evil.name", lambda d: d.update(name="HP\n.control")),
                          ("evil.provenance (a key)", lambda d: d["provenance"].update({"x\ny": "z"})),
                          ("evil.family", lambda d: d.update(family="vteam\r"))]:
        d = json.loads(json.dumps(data))
        mutate(d)
        _write_toml(tmp_path / "evil.toml", d)
        with pytest.raises(CardError) as info:
            load_card(tmp_path / "evil.toml")
        assert str(info.value).startswith(where), str(info.value)


def test_card_name_must_be_a_spice_identifier(tmp_path):
    data = _bundled("devices", "hp_tio2_joglekar")
    data["name"] = "../../escape"
    _write_toml(tmp_path / "evil.toml", data)
    with pytest.raises(ParameterError, match=r"evil\.name = '../../escape' is invalid"):
        load_card(tmp_path / "evil.toml")


def test_neuron_card_inline_memristor_name_must_be_an_identifier(tmp_path):
    data = _bundled("devices", "vlif_neuron")
    mem = data["memristors"]
    key = next(iter(mem))
    if isinstance(mem[key], str):
        pytest.skip("the bundled vLIF neuron names a library card, no inline memristor")
    mem[key]["name"] = "TS .control"
    _write_toml(tmp_path / "evil_neuron.toml", data)
    with pytest.raises(ParameterError, match=r"\.name = 'TS \.control' is invalid"):
        load_neuron_card(tmp_path / "evil_neuron.toml")


def test_neuron_card_preset_config_and_spec_refuse_control_characters(tmp_path):
    neuron = _bundled("devices", "mif_neuron")
    neuron["description"] = "MIF\n.control"
    _write_toml(tmp_path / "n.toml", neuron)
    with pytest.raises(CardError, match=r"n\.description"):
        load_neuron_card(tmp_path / "n.toml")

    preset = _bundled("crossbar", "hfox_1t1r_64")
    preset["provenance"] = "ISCAS\u2028.include /etc/passwd"
    _write_toml(tmp_path / "p.toml", preset)
    with pytest.raises(CardError, match=r"p\.provenance"):
        load_preset(tmp_path / "p.toml")

    from memsim.training.config import load_config
    config = _bundled("configs", "digits_quickstart")
    config["encoding"]["name"] = "direct\r\n.endc"
    _write_toml(tmp_path / "c.toml", config)
    with pytest.raises(ConfigError, match=r"c\.encoding\.name"):
        load_config(tmp_path / "c.toml")

    from memsim.errors import MemsimError as Base
    from memsim.sweep.spec import load_spec
    (tmp_path / "s.toml").write_text('name = "sweep\\u0085x"\n')
    with pytest.raises(Base, match=r"s\.name: the text holds U\+0085"):
        load_spec(tmp_path / "s.toml")


def test_check_strings_walks_lists_and_nested_tables():
    check_strings({"a": [1, "ok", {"b": "fine"}], "c": {"d": ["x y"]}}, "f")
    with pytest.raises(CardError, match=r"f\.a\[2\]\.b"):
        check_strings({"a": [1, "ok", {"b": "bad\tvalue"}]}, "f")


# ----------------------------------------------------------------------------------------------------------
# every netlist memsim writes, from hostile objects built without the loaders

def test_device_netlists_keep_hostile_provenance_in_comments(tmp_path):
    card = load_card("hp_tio2_joglekar")
    stim = Sine(1.0, 1.0, cycles=1)
    benign_lib, benign_tb = subcircuit(card), device_testbench(card, stim, 1e-3)
    for text in _hostile(tmp_path / "pwned"):
        evil = dataclasses.replace(card, provenance={"source": text, "doi": text}, description=text)
        _assert_same_structure(subcircuit(evil), benign_lib)
        _assert_same_structure(device_testbench(evil, stim, 1e-3), benign_tb)


def test_renderers_refuse_hostile_names_and_values_from_python():
    card = load_card("hp_tio2_joglekar")
    with pytest.raises(ParameterError, match="card.name"):
        subcircuit(dataclasses.replace(card, name="x\n.control"))
    with pytest.raises(ParameterError, match="R_on"):
        subcircuit(dataclasses.replace(card, parameters={**card.parameters, "R_on": "1\n.control"}))
    with pytest.raises(ParameterError, match="overrides"):
        device_testbench(card, Sine(1.0, 1.0), 1e-3, overrides={"x0\n.control": 0.5})


def test_neuron_netlists_keep_hostile_text_in_comments(tmp_path):
    card = load_neuron_card("mif_neuron")
    current = np.full(5, 1e-6)
    benign_sub, benign_tb = neuron_subcircuit(card), neuron_testbench(card, current, card.dt, synapse=True)
    for text in _hostile(tmp_path / "pwned"):
        mems = tuple(dataclasses.replace(m, provenance={"source": text}) for m in card.memristors)
        evil = dataclasses.replace(card, provenance={"source": text}, memristors=mems)
        _assert_same_structure(neuron_subcircuit(evil), benign_sub)
        _assert_same_structure(neuron_testbench(evil, current, card.dt, synapse=True), benign_tb)


def test_crossbar_tile_netlist_keeps_hostile_text_in_comments(tmp_path):
    circuit = TileCircuit(wires=Wires(r_wordline=1.0, r_bitline=1.0))
    card = load_card("stanford_pku_hfox")
    g, x, v = np.full((2, 3), 1e-5), np.full((2, 3), 0.5), np.array([0.1, 0.2])
    benign_g = tile_netlist(v, circuit, g=g)
    benign_x = tile_netlist(v, circuit, card=card, x=x)
    for text in _hostile(tmp_path / "pwned"):
        _assert_same_structure(tile_netlist(v, circuit, g=g, title=text), benign_g)
        evil = dataclasses.replace(card, provenance={"source": text}, description=text)
        _assert_same_structure(tile_netlist(v, circuit, card=evil, x=x, title=text), benign_x)


def test_exported_snn_netlist_keeps_hostile_text_in_comments(tmp_path):
    from memsim.training.export_spice import network_netlist
    from memsim.training.network import MemristiveSNN

    torch.manual_seed(0)
    net = MemristiveSNN([3, 2], dt=load_neuron_card("mif_neuron").dt, time_steps=3).double()
    x = torch.full((3, 3), 0.1, dtype=torch.float64)
    benign = network_netlist(net, x)
    for text in _hostile(tmp_path / "pwned"):
        _assert_same_structure(network_netlist(net, x, title=text), benign)


def test_fit_check_netlist_keeps_hostile_text_in_comments(tmp_path):
    """The fit's ngspice check renders the fitted card under the measurement's PWL source."""
    from memsim.stimuli import PWL
    card = load_card("vteam_default")
    stim = PWL([0.0, 1e-6, 2e-6, 3e-6], [0.0, 0.5, -0.5, 0.0])
    benign = device_testbench(card, stim, 1e-8)
    for text in _hostile(tmp_path / "pwned"):
        _assert_same_structure(device_testbench(dataclasses.replace(card, provenance={"source": text}), stim, 1e-8),
                               benign)


# ----------------------------------------------------------------------------------------------------------
# ngspice itself: the hazard is real, and a hostile card runs nothing

@pytest.mark.spice
def test_ngspice_would_run_a_control_block_but_not_from_a_hostile_card(tmp_path):
    from memsim import spice
    from memsim.devices.simulate import spice_trace

    # positive control: the same text as raw netlist lines does run the command, so the test below can fail
    control = tmp_path / "control_ran"
    raw = f"* control\nR1 a 0 1k\nV1 a 0 DC 1\n.control\nshell touch {control}\n.endc\n.op\n.end\n"
    try:
        spice.run(raw)
    except MemsimError:
        pass  # whatever ngspice makes of the .op, the control block has run or not by now
    assert control.exists(), "ngspice in shared mode did not run the control block: the check below proves nothing"

    card = load_card("hp_tio2_joglekar")
    marker = tmp_path / "pwned"
    for text in _hostile(marker)[:6]:
        evil = dataclasses.replace(card, provenance={"source": text, "doi": text})
        spice_trace(evil, Sine(0.5, 1.0, cycles=0.25), 1e-3)
        assert not marker.exists()


@pytest.mark.spice
def test_device_iv_on_a_hostile_card_creates_no_file(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    data = _bundled("devices", "hp_tio2_joglekar")
    data["name"] = "evil_card"
    data["provenance"]["source"] = HOSTILE[0].replace("{marker}", str(marker))
    lib = tmp_path / "lib"
    lib.mkdir()
    _write_toml(lib / "evil_card.toml", data)
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(lib))
    png = tmp_path / "iv.png"
    assert main(["device", "iv", "evil_card", "--plot", str(png)]) == 2
    err = capsys.readouterr().err
    assert "evil_card.provenance.source: the text holds U+000A" in err and len(err.strip().splitlines()) == 1
    assert main(["verify", "--kind", "device", "--model", "evil_card", "--quiet"]) == 2
    assert not marker.exists() and not png.exists()


# ----------------------------------------------------------------------------------------------------------
# the rendered Python of memsim.scalar

def test_scalar_source_takes_no_text_from_a_card(tmp_path):
    card = load_card("hp_tio2_joglekar")
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    with pytest.raises(ParameterError, match="R_on"):
        device_source(card.family, {**card.parameters, "R_on": payload})
    with pytest.raises(ParameterError):
        device_source(card.family, {**card.parameters, payload: 1.0})
    with pytest.raises(ParameterError):
        device_source(card.family, {**card.parameters, "R_on": float("nan")})
    # names in the source are the family's own; every number is a float literal
    source = device_source(card.family, card.parameters)
    compile(source, "<test>", "exec")
    assert "import" not in source and "__" not in source and not marker.exists()

    from memsim.scalar import neuron_source
    neuron = load_neuron_card("mif_neuron")
    evil = dataclasses.replace(neuron, parameters={**neuron.parameters, "C": payload})
    with pytest.raises(ParameterError):
        neuron_source(evil, synapse=False)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------------
# output files readable by the group; a broken file on a search path

def test_atomic_writes_respect_the_umask_and_an_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "results.csv", "a,b\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "private.txt", "x").stat().st_mode) == 0o600
        os.chmod(path, 0o640)
        atomic_write_text(path, "c,d\n")  # replacing a file keeps its mode, as open(path, "w") does
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "c,d\n"
    finally:
        os.umask(old)


def test_a_broken_file_on_a_search_path_does_not_hide_the_library(tmp_path, monkeypatch, capsys):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "broken.toml").write_text("name = \n[[[")
    invalid = _bundled("devices", "vteam_default")
    invalid["name"] = "invalid_card"
    del invalid["parameters"]
    _write_toml(cards / "invalid_card.toml", invalid)
    good = _bundled("devices", "vteam_default")
    good["name"] = "my_vteam"
    _write_toml(cards / "my_vteam.toml", good)
    monkeypatch.setenv("MEMSIM_DEVICE_PATH", str(cards))
    assert main(["device", "list"]) == 0
    out, err = capsys.readouterr()
    assert "my_vteam" in out and "hp_tio2_joglekar" in out
    assert "skipped broken: " in err and "not valid TOML" in err
    assert "skipped invalid_card: " in err and "invalid_card" not in out
    assert main(["neuron", "--list"]) == 0
    out, err = capsys.readouterr()
    assert "mif_neuron" in out and "skipped broken" in err
    assert main(["device", "info", "broken"]) == 2
    assert "not valid TOML" in capsys.readouterr().err

    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "bad_preset.toml").write_bytes(b"\xff\xfe not toml")
    monkeypatch.setenv("MEMSIM_CROSSBAR_PATH", str(presets))
    assert main(["crossbar", "list"]) == 0
    out, err = capsys.readouterr()
    assert "hfox_1t1r_64" in out and "skipped bad_preset" in err
    assert main(["crossbar", "info", "bad_preset"]) == 2


def test_overrides_and_stored_configs_refuse_control_characters(capsys):
    from memsim.training.config import load_config, parse_config
    with pytest.raises(ConfigError, match=r"encoding\.name: the text holds U\+000A"):
        load_config("digits_quickstart", ['encoding.name="direct\\n.control"'])
    with pytest.raises(ConfigError, match=r"checkpoint\.encoding\.name"):
        parse_config({"encoding": {"name": "direct\u2028x"}}, source="checkpoint")
    assert main(["train", "digits_quickstart", "--set", 'encoding.name="a\\rb"']) == 2
    assert "U+000D (carriage return)" in capsys.readouterr().err
