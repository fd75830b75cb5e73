"""A notebook's ``parameters`` cell: declarations, validation of ``-p`` overrides, the ``--list`` table.

Each line of the cell tagged ``parameters`` is ``name = default  # <declarations>: <help text>``.
Declarations are optional, separated by ``"; "``, and end at the first ``": "``:

- a type, required when the default is ``None``: ``int | None``, ``float | None``, ``str | None``,
  ``bool | None``, ``list[int] | None``, ``list[float] | None`` (atoms: int, float, str, bool,
  list, list[...], None);
- ``choice: a|b|c``: the allowed values (strings unless they read as numbers);
- ``range: [lo, hi]``: allowed numbers, ``(``/``)`` for open ends, ``inf`` allowed. For a list
  parameter, choices and range apply to every element.

Examples::

    profile = "smoke"  # choice: smoke|full: "smoke" small and fast for CI; "full" paper settings
    num_seeds = None  # int | None; range: [1, 100]: number of seeds (None: 1 in smoke, 10 in full)
    dropout = 0.6  # range: [0, 1): dropout on every layer's input and on attention

Without a type declaration the type is inferred from the default (``any`` for ``None`` or an
expression such as ``2 ** 10``). Every check here happens before a folder or a kernel exists.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tgad_lite.device import DEVICE_CHOICES
from tgad_lite.notebooks.errors import ParameterError, RunnerError

PROFILES = ("smoke", "full")
# Set by the runner itself, never through -p: profile has --profile, output_dir is the run folder.
RESERVED = ("profile", "output_dir")
# The runner hands `seed` to the kernel as PYTHONHASHSEED, which Python accepts only in this range.
HASH_SEED_MAX = 2**32 - 1

_ATOM = r"(?:int|float|str|bool|None|list(?:\[(?:int|float|str|bool)\])?)"
_TYPE_RE = re.compile(rf"(?P<type>{_ATOM}(?:\s*\|\s*{_ATOM})*)(?=\s*(?:;|:|$))")
# Choice values may hold ':' (as in cuda:0) but not ': ' or ';', which end the declaration.
_CHOICE_RE = re.compile(r"choice:\s*(?P<values>[^;]+?)(?=\s*(?:;|:\s|:$|$))")
_RANGE_RE = re.compile(
    r"range:\s*(?P<open>[\[(])\s*(?P<lo>[^,\s]+)\s*,\s*(?P<hi>[^\])\s]+)\s*(?P<close>[\])])(?=\s*(?:;|:|$))"
)
_MISSING_SEPARATOR_RE = re.compile(r"[\w\[\]| ]*?\b(?:choice|range):")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_DEVICE_INDEX_RE = re.compile(r"cuda:\d+")
_DECLARATION_HINT = (
    "write `name = default  # <type>; choice: a|b; range: [lo, hi]: help text`, "
    "e.g. `num_seeds = None  # int | None; range: [1, 100]: number of seeds`"
)


@dataclass(frozen=True)
class Range:
    """Allowed numbers ``low .. high``; ``low_closed``/``high_closed`` say whether the ends belong."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = True

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        def show(x: float) -> str:
            if math.isinf(x):
                return "inf" if x > 0 else "-inf"
            return str(int(x)) if float(x).is_integer() else repr(x)

        return f"{'[' if self.low_closed else '('}{show(self.low)}, {show(self.high)}{']' if self.high_closed else ')'}"


@dataclass(frozen=True)
class ParameterSpec:
    """One assignment of a notebook's ``parameters`` cell.

    ``types``: the accepted types, declared (``("int", "None")``) or inferred from the default
    (``("float",)``); empty means anything. ``type_name`` is their display (``"int | None"``,
    ``"any"``). ``declared`` says whether a type was declared. ``choices`` and ``range`` are the
    declared allowed values (``None``: not declared). ``default`` is the parsed literal (or the
    source text when it is not a literal); ``default_source`` is the text as written; ``help`` is
    the comment after the declarations.
    """

    name: str
    type_name: str
    default: Any
    default_source: str
    help: str
    types: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    range: Range | None = None
    declared: bool = False

    @property
    def allows_none(self) -> bool:
        return not self.types or "None" in self.types

    def allowed(self) -> str:
        """The declared choices and range as text (``"smoke|full"``, ``"[0, 1)"``), or ``""``."""
        parts = []
        if self.choices is not None:
            parts.append("|".join(str(c) for c in self.choices))
        if self.range is not None:
            parts.append(str(self.range))
        return "; ".join(parts)


# --------------------------------------------------------------------------- declarations


def _number(text: str) -> float | None:
    text = text.strip().lower()
    if text in ("inf", "+inf"):
        return math.inf
    if text == "-inf":
        return -math.inf
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return None


def _choice_value(text: str) -> Any:
    text = text.strip()
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


def parse_declarations(comment: str, where: str = "parameter") -> tuple[dict[str, Any], str]:
    """Split a help comment into its declarations and its help text.

    Returns ``({"types": (...), "choices": (...), "range": Range}, help)`` with only the keys
    declared. A comment that does not start with a declaration is all help text. Raises
    ``RunnerError`` (naming ``where``) for a declaration that cannot be read.
    """
    text = comment.strip()
    found: dict[str, Any] = {}
    pos = 0
    while True:
        rest = text[pos:]
        if rest.startswith("choice:"):
            match, key = _CHOICE_RE.match(rest), "choices"
        elif rest.startswith("range:"):
            match, key = _RANGE_RE.match(rest), "range"
        else:
            match, key = _TYPE_RE.match(rest), "types"
        if match is None:
            if pos == 0 and key == "types":
                if _MISSING_SEPARATOR_RE.match(text):  # "float range: [0, 1): ..." is a typo, not help
                    raise RunnerError(
                        f"{where}: {text[:40]!r}... looks like declarations without their '; ' separator; "
                        + _DECLARATION_HINT
                    )
                return {}, text  # plain help text, no declarations
            fix = {
                "range": "write `range: [lo, hi]`, [ ] for closed ends and ( ) for open ones, e.g. `range: [0, 1)`",
                "choices": "write `choice: a|b|c`",
            }.get(key, _DECLARATION_HINT)
            raise RunnerError(f"{where}: cannot read the declaration {rest[:40]!r} in {comment.strip()!r}; {fix}")
        if key in found:
            raise RunnerError(f"{where}: {key.rstrip('s')} declared twice in {comment.strip()!r}; declare it once")
        if key == "types":
            atoms = tuple(a.strip() for a in match["type"].split("|"))
            if set(atoms) == {"None"}:
                raise RunnerError(f"{where}: type 'None' alone accepts nothing else; write e.g. `int | None`")
            found[key] = atoms
        elif key == "choices":
            values = tuple(_choice_value(v) for v in match["values"].split("|"))
            if any(v == "" for v in values):
                raise RunnerError(f"{where}: empty value in {match.group(0)!r}; write `choice: a|b|c`")
            found[key] = values
        else:
            low, high = _number(match["lo"]), _number(match["hi"])
            if low is None or high is None or low > high:
                raise RunnerError(
                    f"{where}: {match.group(0)!r} is not a range of numbers lo <= hi; "
                    "write e.g. `range: [0, 1)` or `range: [1, inf)`"
                )
            found[key] = Range(low, high, match["open"] == "[", match["close"] == "]")
        pos += match.end()
        after = text[pos:].lstrip()
        if not after:
            return found, ""
        if after.startswith(";"):
            pos = len(text) - len(after[1:].lstrip())
            continue
        if after.startswith(":"):
            return found, after[1:].strip()
        raise RunnerError(
            f"{where}: unexpected {after[:30]!r} after a declaration in {comment.strip()!r}; "
            "separate declarations with '; ' and end them with ': ' before the help text"
        )


def _inferred_type(value: Any) -> str:
    if value is None:
        return "any"
    for kind in (bool, int, float, str, list, dict, tuple):  # bool before int: bool is an int
        if isinstance(value, kind):
            return kind.__name__
    return "any"


def make_spec(name: str, default_source: str, comment: str, where: str = "") -> ParameterSpec:
    """The ``ParameterSpec`` of ``name = default_source  # comment`` (``where`` prefixes errors)."""
    where = f"{where}parameter {name!r}"
    try:
        default = ast.literal_eval(default_source)
        inferred = _inferred_type(default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        # An expression such as `2 ** 10` or `np.pi`: we cannot know its type, accept anything.
        default, inferred = default_source, "any"
    found, help_text = parse_declarations(comment, where)
    types = found.get("types")
    declared = types is not None
    if types is None:
        types = () if inferred == "any" else (inferred,)
    type_name = " | ".join(types) if types else "any"
    return ParameterSpec(
        name,
        type_name,
        default,
        default_source,
        help_text,
        tuple(types),
        found.get("choices"),
        found.get("range"),
        declared,
    )


def _escape_format(path: Path) -> str:
    # papermill runs str.format on paths (for templated names); keep literal braces literal.
    return str(path).replace("{", "{{").replace("}", "}}")


def notebook_parameters(path: str | os.PathLike) -> dict[str, ParameterSpec]:
    """Parameters declared in the notebook's cell tagged ``parameters``, in cell order.

    Returns an empty dict when the notebook has no such cell. Raises ``RunnerError`` naming the
    notebook and parameter when a declaration cannot be read.
    """
    import papermill

    path = Path(path)
    if not path.is_file():
        raise RunnerError(f"notebook not found: {path}")
    try:
        raw = papermill.inspect_notebook(_escape_format(path.resolve()))
    except Exception as exc:  # a broken file: say which one
        raise RunnerError(f"cannot read the parameters of {path}: {exc}") from exc
    return {
        name: make_spec(name, str(info["default"]), str(info["help"]), f"{path.name}, ") for name, info in raw.items()
    }


def parameter_problems(notebook: str, specs: Mapping[str, ParameterSpec]) -> list[str]:
    """Authoring problems of a parameters cell: missing help, an undeclared ``None`` default, a
    default or a choice outside its own declarations. Empty when the cell is sound."""
    problems = []
    for spec in specs.values():
        where = f"{notebook}: parameter {spec.name!r}"
        if not spec.help:
            problems.append(f"{where} has no help text; end its line with `# <what it does>`")
        if spec.default is None and not spec.declared:
            problems.append(
                f"{where} defaults to None but declares no type, so any value would be accepted; "
                f"declare it, e.g. `{spec.name} = None  # int | None: ...` (int, float, str, bool or list[int], "
                "with | None)"
            )
        try:
            ast.literal_eval(spec.default_source)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue  # an expression such as `2 ** 10`: its value is only known in the kernel
        try:
            check_value(spec, spec.default, notebook)
        except ParameterError as exc:
            problems.append(f"{where}: its default does not fit its own declarations: {exc}")
        for choice in spec.choices or ():
            try:
                check_value(spec, choice, notebook)
            except ParameterError as exc:
                problems.append(f"{where}: choice {choice!r} does not fit its type or range: {exc}")
    return problems


# --------------------------------------------------------------------------- values


def parse_cli_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``["epochs=5", "dataset=cora"]`` into ``{"epochs": 5, "dataset": "cora"}``.

    Values are Python literals (``5``, ``0.1``, ``True``, ``None``, ``"01"``, ``[1, 2]``); text that
    is not a literal, such as a bare word, is kept as a string.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"-p expects name=value, got {pair!r} (example: -p epochs=5)")
        if not key.isidentifier():
            raise ParameterError(f"-p {pair!r}: {key!r} is not a valid parameter name")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = text.strip()
        if key in out and out[key] != value:
            raise ParameterError(f"parameter {key!r} given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


def _passable(value: Any) -> Any:
    """``value`` in a form papermill writes back faithfully (it turns a tuple into a string)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_passable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _passable(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


_NOT = object()  # "does not fit"


def _fit(atom: str, value: Any) -> Any:
    """``value`` converted to type ``atom`` (int -> float for a float), or ``_NOT``."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if atom == "None":
        return None if value is None else _NOT
    if atom == "bool":
        return value if isinstance(value, bool) else _NOT
    if atom == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _NOT
    if atom == "float":
        return float(value) if is_number else _NOT
    if atom == "str":
        return value if isinstance(value, str) else _NOT
    if atom in ("list", "tuple"):
        return list(value) if isinstance(value, (list, tuple)) else _NOT
    if atom == "dict":
        return value if isinstance(value, dict) else _NOT
    if atom.startswith("list["):
        if not isinstance(value, (list, tuple)):
            return _NOT
        items = [_fit(atom[5:-1], v) for v in value]
        return _NOT if any(v is _NOT for v in items) else items
    raise AssertionError(f"unknown type atom {atom!r}")  # the declaration regex admits no other


def _elements(spec: ParameterSpec, value: Any) -> list[Any]:
    """What choices and range apply to: the value, or each element of a list parameter."""
    if isinstance(value, list) and any(t.startswith("list") for t in spec.types):
        return value
    return [value]


def _type_hint(spec: ParameterSpec, value: Any) -> str:
    if spec.types == ("bool",) and isinstance(value, (str, int)):
        return " (write True or False)"
    if "str" in spec.types:
        return f" (to pass text that looks like a literal, quote it: -p {spec.name}='\"{value}\"')"
    return ""


def check_value(spec: ParameterSpec, value: Any, notebook: str) -> Any:
    """``value`` converted for ``spec`` (int -> float for a float knob), ready for papermill.

    Raises ``ParameterError`` naming ``notebook``, the parameter, what is allowed and ``value``.
    """
    where = f"parameter {spec.name!r} of {notebook}"
    if value is None and spec.allows_none:
        return None
    if not spec.types:
        converted = value
    else:
        for atom in spec.types:
            converted = _fit(atom, value)
            if converted is not _NOT:
                break
        else:
            raise ParameterError(
                f"{where} expects {spec.type_name} (default {spec.default_source}), "
                f"got {type(value).__name__} {value!r}" + _type_hint(spec, value)
            )
    if spec.name == "device" and isinstance(converted, str):
        # as tgad_lite.device.resolve_device reads it: case and spaces do not matter, cuda:N is cuda
        converted = converted.strip().lower()
    for item in _elements(spec, converted):
        if spec.choices is not None and item not in spec.choices:
            if spec.name == "device" and "cuda" in spec.choices and _DEVICE_INDEX_RE.fullmatch(str(item)):
                continue
            close = difflib.get_close_matches(str(item), [str(c) for c in spec.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            extra = " (or cuda:N)" if spec.name == "device" and "cuda" in spec.choices else ""
            raise ParameterError(
                f"{where} must be one of {'|'.join(map(str, spec.choices))}{extra}, got {item!r}{hint}"
            )
        if spec.range is not None and item not in spec.range:
            raise ParameterError(f"{where} must be a number in {spec.range}, got {item!r}")
    try:
        return _passable(converted)
    except TypeError:
        raise ParameterError(
            f"{where}: papermill cannot pass a {type(value).__name__} ({value!r}); use a list, dict, str or number"
        ) from None


def effective_parameters(specs: Mapping[str, ParameterSpec], injected: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value for one run: the defaults overlaid with what the runner injects."""
    values = {name: spec.default for name, spec in specs.items() if name != "output_dir"}
    values.update({k: v for k, v in injected.items() if k != "output_dir"})
    return values


def parameters_digest(values: Mapping[str, Any], length: int = 8) -> str:
    """A short, stable hash of a run's parameter values (names the run folder)."""
    import hashlib

    text = json.dumps(values, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _check_hash_seed(notebook: str, spec: ParameterSpec | None, value: Any) -> str | None:
    if spec is None or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= HASH_SEED_MAX:
        return (
            f"parameter 'seed' of {notebook} must be a whole number in [0, {HASH_SEED_MAX}] "
            f"(the runner passes it to the kernel as PYTHONHASHSEED), got {value!r}"
        )
    return None


def validate_jobs(
    jobs: Sequence[tuple[str, Mapping[str, ParameterSpec], Mapping[str, Any]]],
    parameters: Mapping[str, Any] | None = None,
    profile: str = "smoke",
) -> list[dict[str, Any]]:
    """Check the overrides of several runs; return what to inject into each, in order.

    ``jobs`` holds ``(notebook name, notebook_parameters(...), own overrides)``; the same
    notebook may appear several times. Shared ``parameters`` go to the notebooks that declare
    them and must be declared by at least one; a run's own overrides must all be declared by its
    notebook. Every value must fit its parameter's type, choices and range. Raises
    ``ParameterError`` listing every problem once; returns ``[{param: value}]`` with ``profile``
    (``output_dir`` is added per run).
    """
    shared = dict(parameters or {})
    notebooks = {name: specs for name, specs, _ in jobs}
    problems: list[str] = []
    if profile not in PROFILES:
        problems.append(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    for overrides in (shared, *(own for _, _, own in jobs)):
        if "profile" in overrides:
            problems.append("set the profile with --profile smoke|full, not -p profile=...")
        if "output_dir" in overrides:
            problems.append("output_dir is set by the runner (the run folder); drop -p output_dir=...")
    for name, specs in notebooks.items():
        for needed in RESERVED:
            if needed not in specs:
                problems.append(
                    f"{name}.ipynb has no {needed!r} in a cell tagged 'parameters'; add "
                    f"`{needed} = {'None' if needed == 'output_dir' else repr('smoke')}` there"
                )
        if "profile" in specs and profile in PROFILES:
            try:
                check_value(specs["profile"], profile, f"{name}.ipynb")
            except ParameterError as exc:
                problems.append(str(exc))
    for key in shared:
        if key not in RESERVED and not any(key in specs for specs in notebooks.values()):
            problems.append(_unknown_message(key, notebooks))

    out = []
    for name, specs, own in jobs:
        injected: dict[str, Any] = {"profile": profile}
        for key, value in {**shared, **own}.items():
            if key in RESERVED:
                continue
            if key not in specs:
                if key in own:
                    problems.append(_unknown_message(key, {name: specs}))
                continue  # a shared parameter of some other notebook
            try:
                injected[key] = check_value(specs[key], value, f"{name}.ipynb")
            except ParameterError as exc:
                problems.append(str(exc))
        seed = injected["seed"] if "seed" in injected else getattr(specs.get("seed"), "default", None)
        problem = _check_hash_seed(f"{name}.ipynb", specs.get("seed"), seed)
        if problem:
            problems.append(problem)
        out.append(injected)
    if problems:
        raise ParameterError("\n".join(dict.fromkeys(problems)))  # a notebook run twice: each problem once
    return out


def validate_parameters(
    specs_by_notebook: Mapping[str, Mapping[str, ParameterSpec]],
    parameters: Mapping[str, Any] | None = None,
    profile: str = "smoke",
) -> dict[str, dict[str, Any]]:
    """``validate_jobs`` for one run of each notebook: ``{name: {param: value}}``.

    ``specs_by_notebook`` maps a notebook name to ``notebook_parameters(...)``.
    """
    names = list(specs_by_notebook)
    injected = validate_jobs([(name, specs_by_notebook[name], {}) for name in names], parameters, profile)
    return dict(zip(names, injected, strict=True))


def _unknown_message(key: str, specs_by_notebook: Mapping[str, Mapping[str, ParameterSpec]]) -> str:
    every = sorted({p for specs in specs_by_notebook.values() for p in specs if p not in RESERVED})
    close = difflib.get_close_matches(key, every, n=1)
    lines = [f"unknown parameter {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")]
    for name, specs in specs_by_notebook.items():
        valid = ", ".join(p for p in specs if p not in RESERVED) or "(none)"
        lines.append(f"  valid parameters of {name}.ipynb: {valid}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- listing


def format_parameter_table(name: str, specs: Mapping[str, ParameterSpec]) -> str:
    """A plain-text table of one notebook's parameters: name, type, default, allowed values, help."""
    if not specs:
        return f"{name}\n  (no cell tagged 'parameters')"
    rows = [("parameter", "type", "default", "allowed", "help")]
    for spec in specs.values():
        help_text = spec.help or "-"
        if spec.name == "output_dir":
            help_text += " [set by the runner]"
        elif spec.name == "profile":
            help_text += " [use --profile]"
        elif spec.name == "seed":
            help_text += " [also the kernel's PYTHONHASHSEED]"
        allowed = spec.allowed()
        if spec.name == "device" and spec.choices is not None and "cuda" in spec.choices:
            allowed += "|cuda:N"
        rows.append((spec.name, spec.type_name, spec.default_source, allowed or "-", help_text))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [name]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return "\n".join(lines)


__all__ = [
    "DEVICE_CHOICES",
    "PROFILES",
    "RESERVED",
    "ParameterSpec",
    "Range",
    "check_value",
    "effective_parameters",
    "format_parameter_table",
    "make_spec",
    "notebook_parameters",
    "parameter_problems",
    "parameters_digest",
    "parse_cli_parameters",
    "parse_declarations",
    "validate_jobs",
    "validate_parameters",
]
