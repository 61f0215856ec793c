"""The magic framework: line and body parsing, validation messages, help, defaults."""
import pytest

from sparkdl_magics.errors import OptionError
from sparkdl_magics.options import (MagicSpec, Option, as_bool, as_choice, as_float, as_int,
                                    as_list_of, as_str)

SPEC = MagicSpec(
    name="demo",
    summary="A demo magic.",
    positional=("input",),
    output=True,
    options=(
        Option("path", None, "where the images are", as_str),
        Option("split", 0.8, "train fraction", as_float(0, 1, exclusive_min=True)),
        Option("seed", 42, "random seed", as_int(minimum=0)),
        Option("labels", "folders", "label source", as_choice("folders", "csv", "none")),
        Option("cache", True, "cache features", as_bool),
        Option("regParam", 0.0, "regularization", as_float(0), grid=True),
        Option("classes", None, "class subset", as_list_of(as_str)),
    ),
)


def test_line_positional_output_and_flags():
    call = SPEC.parse("flowers -> out --seed 7 --split=0.5 --cache false")
    assert call.positional == ["flowers"]
    assert call.output == "out"
    assert call.options["seed"] == 7 and call.options["split"] == 0.5
    assert call.options["cache"] is False


def test_arrow_without_spaces_and_bare_bool_flag():
    call = SPEC.parse("flowers ->out --cache")
    assert call.output == "out" and call.options["cache"] is True


def test_body_is_yaml_subset_with_comments_and_lists():
    body = """
    path: data/flower_photos   # one folder per class
    regParam: [0.01, 0.1]
    classes: Car, Tree
    """
    call = SPEC.parse("x", "\n".join(l.strip() for l in body.splitlines()))
    assert call.options["path"] == "data/flower_photos"
    assert call.options["regParam"] == [0.01, 0.1]
    assert call.options["classes"] == ["Car", "Tree"]


def test_flag_and_body_key_are_the_same_option():
    from_line = SPEC.parse("x --regParam [0.5,1]").options
    from_body = SPEC.parse("x", "regParam: [0.5, 1]").options
    assert from_line == from_body


def test_same_option_on_line_and_body_is_an_error():
    with pytest.raises(OptionError, match="'seed' is given both"):
        SPEC.parse("x --seed 1", "seed: 2")


def test_defaults_fill_missing_options():
    call = SPEC.parse("x")
    assert call.options == {o.name: o.default for o in SPEC.options}
    assert call.given == ()


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(OptionError) as err:
        SPEC.parse("x", "pth: /data")
    message = str(err.value)
    assert "'pth'" in message and "did you mean 'path'" in message and "valid: path" in message


def test_bad_choice_lists_valid_choices():
    with pytest.raises(OptionError, match=r"option 'labels'.*'folder'.*did you mean 'folders'.*valid: folders, csv, none"):
        SPEC.parse("x --labels folder")


def test_choice_is_case_insensitive_and_canonical():
    assert SPEC.parse("x --labels CSV").options["labels"] == "csv"


@pytest.mark.parametrize("line, needle", [
    ("x --split 1.5", "option 'split': must be at most 1"),
    ("x --split 0", "option 'split': must be greater than 0"),
    ("x --seed -3", "option 'seed': must be at least 0"),
    ("x --seed abc", "option 'seed': expected a whole number"),
    ("x --cache maybe", "expected true or false"),
])
def test_bad_values_name_the_option(line, needle):
    with pytest.raises(OptionError, match=needle):
        SPEC.parse(line)


def test_grid_values_are_each_checked():
    with pytest.raises(OptionError, match="regParam"):
        SPEC.parse("x", "regParam: [0.1, -1]")


def test_bad_yaml_body_gives_line_number():
    with pytest.raises(OptionError, match="cannot read the cell body at line 2"):
        SPEC.parse("x", "path: a\nsplit: [0.1\nseed: 3")


def test_body_must_be_mapping():
    with pytest.raises(OptionError, match="key: value"):
        SPEC.parse("x", "- a\n- b")


def test_config_defaults_apply_and_are_checked():
    assert SPEC.parse("x", defaults={"seed": 5}).options["seed"] == 5
    assert SPEC.parse("x --seed 9", defaults={"seed": 5}).options["seed"] == 9
    with pytest.raises(OptionError, match=r"%config SparkDLMagics.demo has unknown option 'sed'"):
        SPEC.parse("x", defaults={"sed": 5})


def test_too_many_positionals_and_bad_output_name():
    with pytest.raises(OptionError, match="too many names"):
        SPEC.parse("a b")
    with pytest.raises(OptionError, match="Python variable name"):
        SPEC.parse("a -> 1abc")


def test_passthrough_keys_are_kept_separately():
    spec = MagicSpec("fitlike", "x", (Option("classifier", "lr", "", as_str),),
                     passthrough="Other keys are classifier parameters.")
    call = spec.parse("", "classifier: lr\nmaxIter: 5")
    assert call.extra == {"maxIter": 5} and "maxIter" not in call.options


def test_help_lists_every_option_with_default():
    text = SPEC.help_text()
    for opt in SPEC.options:
        assert opt.name in text
    assert "[default: 0.8]" in text and "Choices: folders, csv, none" in text
    assert "%%demo [input] [-> name]" in text


def test_a_bad_choice_names_the_value_once():
    from sparkdl_magics.options import Option, as_choice
    option = Option("method", "auto", "how", as_choice("auto", "cam"), nullable=False)
    with pytest.raises(OptionError) as info:
        option._convert_one("lime")
    assert str(info.value).count("'lime'") == 1 and "valid: auto, cam" in str(info.value)
