"""Key specs (memsim.schema.KeySpec): each key of a card, neuron card, preset and sweep spec is declared once, with
its type, unit, range, default and meaning, and the loader checks files against that declaration.

Checked here without Sphinx (tests/test_docs.py checks the rendered reference): that every declared key is complete
(kind, meaning, default or what its absence means); that ``KeySpec`` accepts exactly what plain Python comparisons
say it should; that the loaders use the specs (a required key left out, a value out of its declared range, a key
not declared: each refused naming the key; an optional key left out takes the declared default); and that the
declarations agree with what they describe (the dataclasses' fields and defaults, the sweep's axis types, the
defaults ``SweepSpec.resolve`` applies).
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest

from memsim import schema
from memsim.crossbar import presets
from memsim.crossbar.circuit import Transistor, Wires
from memsim.crossbar.nonideal import NonIdealities
from memsim.crossbar.periphery import ADC, DAC
from memsim.devices import cards
from memsim.devices.cards import card_path, parse_card
from memsim.errors import CardError, MemsimError, ParameterError
from memsim.neurons import cards as neuron_cards
from memsim.schema import REQUIRED, KeySpec, read_toml
from memsim.sweep import spec as sweep_spec
from memsim.sweep import study
from memsim.sweep.spec import SweepError, SweepSpec, parse_spec
from memsim.sweep.study import StudyError, parse_study
from memsim.training import config as training_config


def key_tables() -> dict[str, dict]:
    """Every table of key specs the loaders validate with, by a name for the messages."""
    tables = {"device card": cards._TOP_KEYS, "device card [valid]": cards._VALID_KEYS,
              "device card [verify]": cards._VERIFY_KEYS, "device card [verify.pulse]": cards._PULSE_KEYS,
              "neuron card": neuron_cards._TOP, "neuron card [simulation]": neuron_cards._SIM,
              "neuron card [verify]": neuron_cards._VERIFY,
              "sweep spec": sweep_spec._TOP_KEYS, "sweep spec [base]": sweep_spec._BASE_KEYS,
              "sweep spec [design]": sweep_spec._DESIGN_KEYS, "sweep axes": sweep_spec._AXIS_ONLY_KEYS,
              "study": study._TOP_KEYS, "study [networks.NAME]": study._NET_KEYS,
              "study [networks.NAME.datasets.DATASET]": study._VARIANT_KEYS, "study [[sweep]]": study._SWEEP_KEYS,
              "study [quick]": study._QUICK_KEYS}
    tables.update({f"preset [{s}]": specs for s, specs in presets._KEYS.items()})
    return tables


def spec_gaps(name: str, specs: dict) -> list[str]:
    """What a table of key specs leaves unsaid: a key that is not a KeySpec, or has no valid kind, no meaning, or
    an optional default (None) without saying what leaving it out means."""
    gaps = []
    for key, s in specs.items():
        if not isinstance(s, KeySpec):
            gaps.append(f"{name}: {key} has no KeySpec ({s!r})")
            continue
        if s.kind not in schema.KEY_KINDS:
            gaps.append(f"{name}: {key} has no type")
        if not s.doc.strip():
            gaps.append(f"{name}: {key} has no meaning")
        if s.default is None and not s.absent.strip():
            gaps.append(f"{name}: {key} is optional but does not say what leaving it out means")
    return gaps


def test_every_declared_key_has_a_type_a_meaning_and_a_default():
    gaps = [g for name, specs in key_tables().items() for g in spec_gaps(name, specs)]
    assert not gaps, "\n".join(gaps)
    # the training config's specs (its own class, same fields): a type and a meaning too
    assert not [k for k, s in training_config.keys().items() if not s.doc.strip() or not s.kind]


def test_the_gap_check_finds_each_kind_of_gap():
    bad = {"a": KeySpec("int", ""), "b": KeySpec("str", "x", default=None), "c": "int", "d": KeySpec("int", "ok")}
    assert spec_gaps("t", bad) == ["t: a has no meaning", "t: b is optional but does not say what leaving it out "
                                   "means", "t: c has no KeySpec ('int')"]
    with pytest.raises(ValueError, match="kind"):
        KeySpec("number", "x")


# --------------------------------------------------------------------------------------------------------------
# KeySpec against plain comparisons

VALUES = [-1, 0, 0.0, 1e-12, 0.5, 1, 2, 99.99, 100, 101, math.nan, math.inf, -math.inf, True, False, "1", None, [1]]


@pytest.mark.parametrize("lo,hi,lo_open,hi_open", [(0.0, None, True, False), (0.0, 100.0, True, False),
                                                   (0.0, 1.0, False, True), (None, None, False, False),
                                                   (1, 32, False, False)])
def test_number_specs_accept_what_the_comparisons_accept(lo, hi, lo_open, hi_open):
    for kind in ("float", "int"):
        s = KeySpec(kind, "x", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
        for v in VALUES:
            number = type(v) in ((int,) if kind == "int" else (int, float)) and math.isfinite(v)
            inside = number and (lo is None or (v > lo if lo_open else v >= lo)) and \
                (hi is None or (v < hi if hi_open else v <= hi))
            assert s.accepts(v) == inside, (kind, lo, hi, v)
            if inside:
                out = s.check(v, "sec.x")
                assert out == v and type(out) is (float if kind == "float" else int)
            else:
                with pytest.raises(ParameterError) as info:
                    s.check(v, "sec.x")
                assert info.value.field == "sec.x" and info.value.allowed == s.allowed()


def test_allowed_and_default_texts():
    assert KeySpec("float", "t", unit="s", lo=0.0, lo_open=True).allowed() == "a finite number > 0 s"
    assert KeySpec("int", "b", lo=1, hi=32).allowed() == "an integer in [1, 32]"
    assert KeySpec("float", "p", lo=0.0, hi=1.0, hi_open=True).allowed() == "a finite number in [0, 1)"
    assert KeySpec("float", "v", unit="V").allowed() == "a finite number in V"
    assert KeySpec("int", "c", lo=1, rule="a divisor of bits").allowed() == "an integer >= 1; a divisor of bits"
    assert KeySpec("choice", "m", choices=("a", "b")).allowed() == "one of ['a', 'b']"
    assert KeySpec("range", "r", unit="A").allowed() == "[low, high] with low < high, in A"
    assert KeySpec("int", "n").default_text() == "required"
    assert KeySpec("int", "n", default=None, absent="ideal").default_text() == "absent: ideal"
    assert [KeySpec("float", "x", default=d).default_text() for d in (99.0, 0.25, 1e-9, 2e-3)] == \
        ["99.0", "0.25", "1e-09", "0.002"]
    assert KeySpec("str", "s", default="column").default_text() == '"column"'
    assert KeySpec("bool", "b", default=True).default_text() == "true"


def test_range_and_list_kinds():
    r = KeySpec("range", "r", unit="V")
    assert r.check([-1, 2], "valid.voltage") == (-1.0, 2.0)
    for bad in ([2, 1], [1, 1], [1], [0, math.inf], "x", [True, 2]):
        assert not r.accepts(bad) or bad == [True, 2]  # a bool is an int in Python; is_finite_number refuses it
    assert not r.accepts([True, 2])
    f = KeySpec("float_list", "f", unit="Hz", lo=0.0, lo_open=True, min_len=2)
    assert f.check([1, 10.0], "verify.frequencies") == (1.0, 10.0)
    assert not f.accepts([1.0]) and not f.accepts([1.0, 0.0]) and not f.accepts((1.0, "2"))
    t = KeySpec("table_list", "p", min_len=1)
    assert t.accepts([{}]) and not t.accepts([]) and not t.accepts([1])
    n = KeySpec("str_list", "n", min_len=1)
    assert n.accepts(["a", "b"]) and not n.accepts([]) and not n.accepts(["a", 1]) and not n.accepts("a")
    assert n.allowed() == "a list of at least 1 strings" and n.check(["a"], "sweep.networks") == ["a"]


def test_required_is_one_object_after_pickling():
    import pickle
    assert pickle.loads(pickle.dumps(REQUIRED)) is REQUIRED
    s = pickle.loads(pickle.dumps(KeySpec("int", "x")))
    assert s.required and s == KeySpec("int", "x")


# --------------------------------------------------------------------------------------------------------------
# the declarations agree with what they describe

@pytest.mark.parametrize("section,cls", [("wires", Wires), ("transistor", Transistor), ("dac", DAC), ("adc", ADC),
                                         ("noise", NonIdealities)])
def test_dataclass_sections_declare_every_field_with_its_default(section, cls):
    specs = presets._KEYS[section]
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    assert list(specs) == fields, f"[{section}] keys differ from {cls.__name__}'s fields"
    made = cls() if section != "wires" else cls(r_wordline=1.0, r_bitline=1.0)
    for key, s in specs.items():
        if s.required:  # required in a preset file, though the class has a default
            assert (section, key) in {("wires", "r_wordline"), ("wires", "r_bitline")}
            continue
        assert s.default == getattr(made, key), (section, key)
        # the declared range holds the default (None: optional, checked by the class)
        assert s.default is None or s.accepts(s.default), (section, key, s.default)


def test_sweep_axis_types_agree_with_the_preset_specs():
    kinds = {int: ("int",), float: ("float",), str: ("str", "choice")}
    for axis, kind in sweep_spec.PRESET_KEYS.items():
        section, key = axis.split(".", 1)
        s = presets._KEYS[section].get(key) or sweep_spec._AXIS_ONLY_KEYS[axis]
        assert s.kind in kinds[kind], (axis, kind, s.kind)
    for axis in sweep_spec.AXES:
        assert axis in sweep_spec.PRESET_KEYS or axis in sweep_spec._BASE_KEYS or axis in sweep_spec._AXIS_ONLY_KEYS
    assert set(sweep_spec.PRUNING_AXES) <= set(sweep_spec._BASE_KEYS)


def test_resolve_applies_the_declared_base_defaults(tmp_path):
    spec = SweepSpec(name="s", description="", base={"checkpoint": "m.pt"}, axes={}, design={}, root=tmp_path)
    r = spec.resolve({})
    names = {"preset": "preset_base"}  # resolve's name for a base key
    checked = 0
    for key, s in sweep_spec._BASE_KEYS.items():
        if s.default is None or key == "mode":  # optional keys; mode "auto" resolves to what it means
            continue
        if names.get(key, key) in r:
            assert r[names.get(key, key)] == s.default, key
            checked += 1
    assert checked >= 10
    assert r["mode"] == "irdrop" and sweep_spec._BASE_KEYS["mode"].default == "auto"


# --------------------------------------------------------------------------------------------------------------
# the loaders check files against the declarations

def _card() -> dict:
    return read_toml(card_path("stanford_pku_hfox"))


def _out_of_range(s: KeySpec):
    """A value of the right type just outside the declared range (None when the range is unbounded)."""
    if s.lo is not None:
        return type(s.lo)(s.lo) if s.lo_open else (s.lo - 1 if s.kind == "int" else s.lo - 0.5)
    return None


@pytest.mark.parametrize("table,specs", [((), cards._TOP_KEYS), (("valid",), cards._VALID_KEYS),
                                         (("verify",), cards._VERIFY_KEYS),
                                         (("verify", "pulse"), cards._PULSE_KEYS)])
def test_device_card_loader_follows_the_specs(table, specs):
    base = _card()
    parse_card(copy.deepcopy(base), "c")
    where = ".".join(("c",) + table)

    def part(d):
        for t in table:
            d = d[t]
        return d
    for key, s in specs.items():
        data = copy.deepcopy(base)
        if s.required:
            del part(data)[key]
            with pytest.raises(MemsimError, match=rf"{where}.*'{key}'|{where}\.{key}"):
                parse_card(data, "c")
        bad = _out_of_range(s)
        if bad is not None:
            data = copy.deepcopy(base)
            part(data)[key] = bad
            with pytest.raises(ParameterError) as info:
                parse_card(data, "c")
            assert info.value.field == f"{where}.{key}" and info.value.allowed == s.allowed()
    data = copy.deepcopy(base)
    part(data)["undeclared_key"] = 1
    with pytest.raises(CardError, match=rf"{where}: unknown key 'undeclared_key'"):
        parse_card(data, "c")


@pytest.mark.parametrize("table,specs", [("simulation", neuron_cards._SIM), ("verify", neuron_cards._VERIFY)])
def test_neuron_card_loader_follows_the_specs(table, specs):
    base = read_toml(card_path("mif_neuron"))
    assert neuron_cards.parse_neuron_card(copy.deepcopy(base), "n").verify.seed == base["verify"].get("seed", 0)
    for key, s in specs.items():
        data = copy.deepcopy(base)
        if s.required:
            del data[table][key]
            with pytest.raises(CardError, match=rf"n\.{table}: missing required key '{key}'"):
                neuron_cards.parse_neuron_card(data, "n")
        else:
            del data[table][key]
            card = neuron_cards.parse_neuron_card(data, "n")
            assert getattr(card.verify, key) == s.default
        bad = _out_of_range(s)
        if bad is not None:
            data = copy.deepcopy(base)
            data[table][key] = bad
            with pytest.raises(ParameterError, match=rf"n\.{table}\.{key} = "):
                neuron_cards.parse_neuron_card(data, "n")


def test_preset_loader_follows_the_specs():
    base = read_toml(presets.preset_path("hfox_0t1r_32"))
    presets.parse_preset(copy.deepcopy(base), "p")
    for section, specs in presets._KEYS.items():
        for key, s in specs.items():
            data = copy.deepcopy(base)
            holder = data if not section else data.get(section)
            if holder is None or key not in holder:
                continue
            del holder[key]
            if s.required:
                with pytest.raises(CardError, match=rf"missing .*{key}"):
                    presets.parse_preset(data, "p")
            elif section in ("tile", "mapping") and s.default is not None:  # the loader applies these defaults
                p = presets.parse_preset(data, "p")
                value = p.circuit.access if key == "access" else getattr(p, key)
                assert value == s.default, (section, key)
        if section:
            data = copy.deepcopy(base)
            data.setdefault(section, {})["undeclared_key"] = 1
            if section == "transistor":
                data["tile"]["access"] = "1T1R"
            with pytest.raises(CardError, match=rf"p\.{section}: unknown key 'undeclared_key'"):
                presets.parse_preset(data, "p")


def test_sweep_spec_checks_base_types_and_bounds_from_the_specs(tmp_path):
    wrong = {int: "3", float: "0.5", str: 3}
    for key, s in sweep_spec._BASE_KEYS.items():
        kind = sweep_spec._KIND_TYPES.get(s.kind)
        if kind is None:
            continue
        base = {"checkpoint": "m.pt", key: wrong[kind]}
        with pytest.raises(SweepError, match=rf"base\.{key} = .* has the wrong type"):
            parse_spec({"base": base}, "s", tmp_path, check_points=False)
        if s.kind == "int" and s.lo is not None:
            base = {"checkpoint": "m.pt", key: int(s.lo) - 1}
            with pytest.raises(SweepError, match=rf"base\.{key} = {int(s.lo) - 1} is invalid: allowed an integer"):
                parse_spec({"base": base}, "s", tmp_path, check_points=False)
    with pytest.raises(SweepError, match=r"unknown key 'chipz'.*did you mean 'chips'"):
        parse_spec({"base": {"checkpoint": "m.pt", "chipz": 2}}, "s", tmp_path, check_points=False)
    with pytest.raises(SweepError, match=r"design: unknown key"):
        parse_spec({"base": {"checkpoint": "m.pt"}, "design": {"kidn": "grid"}}, "s", tmp_path, check_points=False)


# --------------------------------------------------------------------------------------------------------------
# study files: parse_study takes each table's keys from its specs

def _study() -> dict:
    """A valid study: one network (a bundled config, resolved but not loaded) and one inline sweep."""
    return {"name": "s", "networks": {"ann": {"config": "digits_quickstart", "overrides": {}, "quick": {},
                                              "datasets": {"mnist": {"overrides": {}}}}},
            "sweep": [{"network": "ann", "name": "w", "base": {"chips": 1}, "axes": {"prune": [0.0, 0.5]}}],
            "quick": {}}


STUDY_TABLES = [((), study._TOP_KEYS, "s.toml"), (("networks", "ann"), study._NET_KEYS, "s.toml.networks.ann"),
                (("networks", "ann", "datasets", "mnist"), study._VARIANT_KEYS, "s.toml.networks.ann.datasets.mnist"),
                (("sweep", 0), study._SWEEP_KEYS, r"s.toml.sweep\[0\]"), (("quick",), study._QUICK_KEYS,
                                                                          "s.toml.quick")]


@pytest.mark.parametrize("path,specs,where", STUDY_TABLES)
def test_study_loader_allows_exactly_the_declared_keys(path, specs, where, tmp_path):
    parse_study(_study(), "s.toml", tmp_path)
    data = _study()
    table = data
    for p in path:
        table = table[p]
    table["undeclared_key"] = 1
    with pytest.raises(StudyError, match=rf"{where}: unknown key 'undeclared_key'") as info:
        parse_study(data, "s.toml", tmp_path)
    # the message lists the declared keys (no close match for this name): the specs, not a second list
    assert all(f"'{k}'" in str(info.value) for k in specs)


def test_study_quick_bounds_and_defaults_are_the_declared_ones(tmp_path):
    assert parse_study(_study(), "s.toml", tmp_path).quick == {k: s.default for k, s in study._QUICK_KEYS.items()}
    assert study.QUICK_DEFAULTS == {k: s.default for k, s in study._QUICK_KEYS.items()}
    for key, s in study._QUICK_KEYS.items():
        assert s.kind == "int" and s.lo is not None and s.accepts(s.default), key
        data = _study()
        data["quick"] = {key: int(s.lo)}
        assert parse_study(data, "s.toml", tmp_path).quick[key] == int(s.lo)  # the bound itself is allowed
        data["quick"] = {key: int(s.lo) - 1}
        with pytest.raises(StudyError, match=rf"quick\.{key} = {int(s.lo) - 1} is invalid: allowed an integer "
                                             rf">= {int(s.lo)}"):
            parse_study(data, "s.toml", tmp_path)


def test_study_required_keys_are_required(tmp_path):
    required = {k for k, s in study._TOP_KEYS.items() if s.required}
    assert required == {"networks", "sweep"} and [k for k, s in study._NET_KEYS.items() if s.required] == ["config"]
    for key, header in (("networks", r"\[networks\]"), ("sweep", r"\[\[sweep\]\]")):
        data = _study()
        del data[key]
        with pytest.raises(StudyError, match=rf"s\.toml: no {header}"):
            parse_study(data, "s.toml", tmp_path)
    data = _study()
    del data["networks"]["ann"]["config"]
    with pytest.raises(StudyError, match=r"networks\.ann\.config is missing"):
        parse_study(data, "s.toml", tmp_path)
