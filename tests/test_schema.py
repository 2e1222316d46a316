"""memsim.schema: the checks shared by cards, neuron cards, presets, configs, sweep specs and cost models."""
import math

import pytest

from memsim import schema
from memsim.errors import CardError, ConfigError, ParameterError


def test_unknown_key_names_the_near_miss_and_the_fix():
    with pytest.raises(CardError) as info:
        schema.check_keys({"name": "x", "paramters": {}}, {"name", "parameters", "verify"}, "card.toml")
    msg = str(info.value)
    assert "card.toml: unknown key 'paramters'" in msg and "did you mean 'parameters'?" in msg and "Fix:" in msg


def test_unknown_key_without_a_near_miss_lists_the_allowed_keys():
    with pytest.raises(ConfigError) as info:
        schema.check_keys({"zzz": 1}, ["rows", "cols"], "preset.tile", ConfigError)
    assert "allowed keys: ['cols', 'rows']" in str(info.value)
    assert (info.value.key, info.value.value) == ("preset.tile.zzz", 1)


def test_closest_follows_difflib_cutoff():
    assert schema.closest("epoch", ["epochs", "seed"]) == "epochs"
    assert schema.closest("xyz", ["epochs", "seed"]) is None
    assert schema.suggest("xyz", ["b", "a"]) == "use one of ['b', 'a']"
    assert schema.suggest("tset", ["train", "test"]) == "did you mean 'test'?"


def test_toml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nrows = [1, 2\ncols = 3\n')
    with pytest.raises(CardError, match=r"bad\.toml: not valid TOML: .*line 3, column 1.*Fix:"):
        schema.read_toml(path)
    with pytest.raises(ConfigError, match="does not exist") as info:
        schema.read_toml(tmp_path / "missing.toml", ConfigError, what="config")
    assert info.value.key == "config"
    path.write_text('name = "x"\n[tile]\nrows = 64\n')
    assert schema.read_toml(path) == {"name": "x", "tile": {"rows": 64}}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "1e-3", None])
def test_non_finite_or_non_number_is_refused_naming_field_and_value(value):
    assert not schema.is_finite_number(value)
    with pytest.raises(ParameterError) as info:
        schema.check_number(value, "card.verify.duration", positive=True, unit="s")
    assert info.value.field == "card.verify.duration" and info.value.value is value
    assert "a positive finite number in s" in str(info.value)


def test_number_ranges():
    assert schema.check_number(3, "x") == 3.0 and isinstance(schema.check_number(3, "x"), float)
    assert schema.check_number(0.0, "x", nonnegative=True) == 0.0
    with pytest.raises(ParameterError, match="a finite number >= 0"):
        schema.check_number(-1e-9, "cost.t_read", nonnegative=True)
    with pytest.raises(ParameterError, match="a positive finite number"):
        schema.check_number(0, "dt", positive=True)
