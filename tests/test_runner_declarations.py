"""The parameter declaration syntax of the ``parameters`` cell: types, ``choice:``, ``range:``.

Pure parsing and checking: no notebook file, no kernel.
"""

from __future__ import annotations

import math

import pytest

from tgad_lite.notebooks import ParameterError, Range, RunnerError, parameter_problems
from tgad_lite.notebooks.parameters import check_value, make_spec, parse_declarations


@pytest.mark.parametrize(
    ("comment", "declared", "help_text"),
    [
        ('choice: smoke|full: "smoke" small and fast for CI; "full" paper settings',
         {"choices": ("smoke", "full")}, '"smoke" small and fast for CI; "full" paper settings'),
        ('choice: auto|cpu|cuda: where tensors live ("auto": cuda when available)',
         {"choices": ("auto", "cpu", "cuda")}, 'where tensors live ("auto": cuda when available)'),
        ("int | None; range: [1, 100]: number of seeds (None: 1 in smoke, 10 in full)",
         {"types": ("int", "None"), "range": Range(1, 100)}, "number of seeds (None: 1 in smoke, 10 in full)"),
        ("range: [0, 1): dropout", {"range": Range(0, 1, True, False)}, "dropout"),
        ("list[float] | None; range: (0, inf): sizes", {"types": ("list[float]", "None"),
         "range": Range(0, math.inf, False, False)}, "sizes"),
        ("choice: 1|2|4.5; range: [1, 8]: heads", {"choices": (1, 2, 4.5), "range": Range(1, 8)}, "heads"),
        ("str | None: a name", {"types": ("str", "None")}, "a name"),
        ("bool | None", {"types": ("bool", "None")}, ""),
        ("number of training epochs", {}, "number of training epochs"),
        ('"smoke": real Cora; "full": real data only', {}, '"smoke": real Cora; "full": real data only'),
        ("int8 weights: whether to quantise", {}, "int8 weights: whether to quantise"),
    ],
)  # fmt: skip
def test_declarations_split_from_help(comment, declared, help_text) -> None:
    assert parse_declarations(comment) == (declared, help_text)


@pytest.mark.parametrize(
    ("comment", "complaint"),
    [
        ("int | None; bogus: x", "cannot read the declaration"),
        ("range: [0, 1: x", "cannot read the declaration"),
        ("range: [2, 1]: x", "not a range of numbers lo <= hi"),
        ("range: [a, 1]: x", "not a range of numbers lo <= hi"),
        ("choice: a||b: x", "empty value"),
        ("None: x", "type 'None' alone"),
        ("int; float: x", "declared twice"),
        ("choice: a|b; choice: c: x", "declared twice"),
        ("int | None range: [1, 2]: x", "without their '; ' separator"),
        ("float range: [0, 1): x", "without their '; ' separator"),
        ("int | None; range: [1, 2] x", "cannot read the declaration"),
    ],
)
def test_unreadable_declarations_are_refused_with_the_fix(comment, complaint) -> None:
    with pytest.raises(RunnerError) as info:
        parse_declarations(comment, "02_cora.ipynb, parameter 'x'")
    assert complaint in str(info.value) and "02_cora.ipynb, parameter 'x'" in str(info.value)


def test_range_ends_open_and_closed() -> None:
    r = Range(0, 1, True, False)
    assert 0 in r and 0.999 in r and 1 not in r and -0.001 not in r
    assert True not in r and "0.5" not in r and math.nan not in r  # bool, text and NaN are not numbers here
    assert str(r) == "[0, 1)" and str(Range(1, math.inf, False, False)) == "(1, inf)"


def test_value_checks_follow_declared_types_choices_and_ranges() -> None:
    seeds = make_spec("num_seeds", "None", "int | None; range: [1, 100]: number of seeds")
    assert check_value(seeds, None, "nb") is None and check_value(seeds, 7, "nb") == 7
    for bad, words in ((0, "must be a number in [1, 100], got 0"), ("abc", "expects int | None"), (True, "expects")):
        with pytest.raises(ParameterError, match=words.replace("[", r"\[").replace("|", r"\|")):
            check_value(seeds, bad, "nb")
    sizes = make_spec("sizes", "None", "list[float] | None; range: (0, inf): sizes")
    assert check_value(sizes, (1, 2.5), "nb") == [1.0, 2.5]
    with pytest.raises(ParameterError, match=r"got -1"):
        check_value(sizes, [3, -1], "nb")
    heads = make_spec("heads", "8", "choice: 1|2|4|8: heads")
    assert check_value(heads, 4, "nb") == 4
    with pytest.raises(ParameterError, match=r"one of 1\|2\|4\|8, got 3"):
        check_value(heads, 3, "nb")


def test_device_is_checked_like_resolve_device() -> None:
    device = make_spec("device", '"auto"', "choice: auto|cpu|cuda: where tensors live")
    given = ("auto", "CPU", " cuda ", "cuda:1")
    assert [check_value(device, v, "nb") for v in given] == ["auto", "cpu", "cuda", "cuda:1"]
    with pytest.raises(ParameterError, match=r"auto\|cpu\|cuda \(or cuda:N\), got 'gpu'"):
        check_value(device, "gpu", "nb")


def test_authoring_problems_are_found() -> None:
    specs = {
        "undeclared": make_spec("undeclared", "None", "number of seeds (None: profile default)"),
        "silent": make_spec("silent", "3", ""),
        "outside": make_spec("outside", "1.5", "range: [0, 1): dropout"),
        "not_a_choice": make_spec("not_a_choice", '"x"', "choice: a|b: which"),
        "bad_choice": make_spec("bad_choice", "1", "int; choice: 1|two: which"),
        "fine": make_spec("fine", "None", "int | None; range: [1, inf): fine"),
        "expression": make_spec("expression", "2 ** 10", "range: [0, 10]: an expression is not checked here"),
    }
    problems = parameter_problems("nb.ipynb", specs)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "'undeclared' defaults to None but declares no type" in text and "undeclared = None  # int | None" in text
    assert "'silent' has no help text" in text
    assert "'outside': its default does not fit" in text and "[0, 1)" in text
    assert "'not_a_choice': its default does not fit" in text
    assert "'bad_choice': choice 'two' does not fit" in text
