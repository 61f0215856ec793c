"""Declarative options for the magics: one declaration drives everything.

An :class:`Option` is declared once per magic (in :mod:`sparkdl_magics.specs`). That
single declaration gives the ``--flag`` on the magic line, the ``key: value`` line in
the cell body, the ``%config SparkDLMagics.<magic> = {...}`` default, the value
conversion and check, and the ``%%magic?`` help text.

Cell bodies are a YAML subset (``key: value`` lines, ``# comments``, ``[a, b]`` lists);
flag values are read with the same YAML scalar rules, so ``--regParam [0.1, 1]`` and
``regParam: [0.1, 1]`` mean the same thing.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .errors import OptionError, did_you_mean

# --------------------------------------------------------------------------- API checks

def check_number(name: str, value: Any, parse: Callable[[Any], Any],
                 valid: Callable[[Any], bool], expected: str, rule: Optional[str] = None) -> Any:
    """An API option's number: *parse* it (``int``, ``float``), then check it with
    *valid*; either failure is one :class:`OptionError` line, ``option 'name': <expected>
    (got value)`` (or ``<rule>`` for a number out of range), naming the value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = parse(value)
    except (TypeError, ValueError, OverflowError):
        raise OptionError(f"option '{name}': {expected} (got {value!r})") from None
    if not valid(number):
        raise OptionError(f"option '{name}': {rule or expected} (got {value!r})")
    return number


# --------------------------------------------------------------------------- converters
# A converter takes the raw (YAML-read) value and returns the checked value, or raises
# ValueError with a short reason; Option.convert adds the option name to that reason.

def as_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a single value, not a list or mapping")
    return str(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def as_int(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("expected a whole number")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        _check_range(number, minimum, maximum)
        return number
    convert.__name__ = "int"
    return convert


def as_float(minimum: Optional[float] = None, maximum: Optional[float] = None,
             exclusive_min: bool = False) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("expected a number")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if exclusive_min and minimum is not None and number <= minimum:
            raise ValueError(f"must be greater than {minimum}")
        _check_range(number, minimum, maximum)
        return number
    convert.__name__ = "float"
    return convert


def _check_range(number: float, minimum: Optional[float], maximum: Optional[float]) -> None:
    if minimum is not None and number < minimum:
        raise ValueError(f"must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise ValueError(f"must be at most {maximum}")


class ValueShown(ValueError):
    """A converter's error whose message already shows the value it was given."""


def as_choice(*choices: str) -> Callable[[Any], str]:
    """Case-insensitive choice; the canonical spelling is returned."""
    by_lower = {c.lower(): c for c in choices}

    def convert(value: Any) -> str:
        text = str(value).strip()
        if text.lower() not in by_lower:
            raise ValueShown(
                f"got {text!r}{did_you_mean(text, choices)} (valid: {', '.join(choices)})")
        return by_lower[text.lower()]
    convert.__name__ = "choice"
    convert.choices = tuple(choices)  # type: ignore[attr-defined]
    return convert


def as_list_of(item: Callable[[Any], Any]) -> Callable[[Any], list]:
    """A list (``[a, b]`` or comma-separated text) whose items pass *item*."""
    def convert(value: Any) -> list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        return [item(v) for v in value]
    convert.__name__ = "list"
    return convert


def as_mapping(value: Any) -> dict:
    """A ``{key: value}`` mapping (YAML flow style: ``{endpoint: http://host:9000}``)."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping such as {key: value}")
    return {str(k): v for k, v in value.items()}


def as_any(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------- declarations

@dataclass(frozen=True)
class Option:
    """One option of a magic (and of the public function behind it)."""

    name: str
    default: Any = None
    help: str = ""
    convert: Callable[[Any], Any] = as_any
    grid: bool = False  # a list value means "try each" (hyper-parameter grid)
    nullable: bool = True  # `none`/`null` accepted and means "not set"

    def check(self, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise OptionError(f"option '{self.name}' needs a value")
        if self.grid and isinstance(value, (list, tuple)):
            if not value:
                raise OptionError(f"option '{self.name}': the list of values is empty")
            return [self._convert_one(v) for v in value]
        return self._convert_one(value)

    def _convert_one(self, value: Any) -> Any:
        try:
            return self.convert(value)
        except ValueError as exc:
            shown = "" if isinstance(exc, ValueShown) else f" (got {value!r})"
            raise OptionError(f"option '{self.name}': {exc}{shown}") from None

    def describe_default(self) -> str:
        return "(none)" if self.default is None else repr(self.default)


@dataclass
class MagicCall:
    """A parsed magic invocation: what the magic body and line said."""

    positional: List[str]
    output: Optional[str]
    options: Dict[str, Any]
    given: Tuple[str, ...] = ()  # option names the user wrote (line, body or %config)
    extra: Dict[str, Any] = field(default_factory=dict)  # pass-through keys (e.g. MLlib params)
    debug: bool = False


@dataclass(frozen=True)
class MagicSpec:
    """Everything about one magic's interface, in one place."""

    name: str
    summary: str
    options: Tuple[Option, ...]
    positional: Tuple[str, ...] = ()  # names of positional arguments, for help
    min_positional: int = 0
    output: bool = False  # accepts `-> name`
    passthrough: Optional[str] = None  # help for extra keys passed on (None: extras rejected)
    is_cell: bool = True
    usage: str = ""

    # ---- lookups
    @property
    def by_name(self) -> Dict[str, Option]:
        return {o.name: o for o in self.options}

    def option(self, name: str) -> Option:
        return self.by_name[name]

    # ---- parsing
    def parse(self, line: str, cell: Optional[str] = None,
              defaults: Optional[Mapping[str, Any]] = None) -> MagicCall:
        positional, output, line_opts, debug = self._parse_line(line)
        body_opts = self._parse_body(cell) if cell else {}
        both = set(line_opts) & set(body_opts)
        if both:
            key = sorted(both)[0]
            raise OptionError(f"option '{key}' is given both on the line and in the cell body")
        config_defaults = dict(defaults or {})
        for key in config_defaults:
            if key not in self.by_name:
                raise OptionError(
                    f"%config SparkDLMagics.{self.name} has unknown option {key!r}"
                    f"{did_you_mean(key, self.by_name)}")
        raw = {**config_defaults, **body_opts, **line_opts}
        options: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for key, value in raw.items():
            if key in self.by_name:
                options[key] = self.by_name[key].check(value)
            elif self.passthrough is not None:
                extra[key] = value
            else:
                raise self.unknown_option(key)
        given = tuple(raw)
        for opt in self.options:
            options.setdefault(opt.name, opt.default)
        if len(positional) < self.min_positional:
            want = " ".join(self.positional[: self.min_positional])
            raise OptionError(f"missing {want!r}: usage is {self.usage_line()}")
        if len(positional) > len(self.positional):
            raise OptionError(
                f"too many names on the line ({' '.join(positional)}): usage is "
                f"{self.usage_line()}")
        if output and not self.output:
            raise OptionError(f"%{self._prefix()}{self.name} takes no '-> name' output")
        return MagicCall(positional, output, options, given, extra, debug)

    def unknown_option(self, key: str) -> OptionError:
        return OptionError(
            f"unknown option {key!r}{did_you_mean(key, self.by_name)} "
            f"(valid: {', '.join(self.by_name)})")

    def _prefix(self) -> str:
        return "%" if self.is_cell else ""

    def _parse_line(self, line: str) -> Tuple[List[str], Optional[str], Dict[str, Any], bool]:
        try:
            tokens = shlex.split(line or "", posix=True)
        except ValueError as exc:
            raise OptionError(f"cannot read the magic line: {exc}") from None
        positional: List[str] = []
        output: Optional[str] = None
        opts: Dict[str, Any] = {}
        debug = False
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "->" or tok.startswith("->"):
                rest = tok[2:]
                if not rest:
                    i += 1
                    if i >= len(tokens):
                        raise OptionError("'->' must be followed by a variable name")
                    rest = tokens[i]
                output = _identifier(rest)
            elif tok.startswith("--") and len(tok) > 2:
                key, eq, value = tok[2:].partition("=")
                key = key.replace("-", "_") if key.replace("-", "_") in self.by_name else key
                if key == "debug":
                    debug = True
                elif eq:
                    opts[key] = _read_scalar(value, key)
                else:
                    opt = self.by_name.get(key)
                    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                    takes_value = nxt is not None and not nxt.startswith("--") and nxt != "->" \
                        and not nxt.startswith("->")
                    if opt is not None and opt.convert is as_bool and not takes_value:
                        opts[key] = True  # a bare boolean flag switches it on
                    elif takes_value:
                        opts[key] = _read_scalar(nxt, key)
                        i += 1
                    elif opt is None and self.passthrough is None:
                        raise self.unknown_option(key)
                    else:
                        raise OptionError(f"option '{key}' needs a value")
            else:
                positional.append(tok)
            i += 1
        return positional, output, opts, debug

    def _parse_body(self, cell: str) -> Dict[str, Any]:
        if not cell.strip():
            return {}
        try:
            data = yaml.safe_load(cell)
        except yaml.YAMLError as exc:
            # where the broken construct starts (a '[' left open), else where it was noticed
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise OptionError(
                f"cannot read the cell body{where}: {problem} "
                "(write one 'key: value' per line; quote values that start with * or &)"
            ) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise OptionError("the cell body must be 'key: value' lines")
        return {str(k): v for k, v in data.items()}

    # ---- help
    def usage_line(self) -> str:
        parts = [f"%{self._prefix()}{self.name}"]
        for i, name in enumerate(self.positional):
            parts.append(name if i < self.min_positional else f"[{name}]")
        if self.output:
            parts.append("[-> name]")
        parts.append("[--option value ...]")
        return " ".join(parts)

    def help_text(self) -> str:
        lines = [self.summary, "", "Usage: " + self.usage_line(), ""]
        if self.usage:
            lines += [self.usage.rstrip(), ""]
        lines.append("Options (as '--name value' on the line"
                     + (" or 'name: value' in the cell body" if self.is_cell else "")
                     + f"; defaults can be set with %config SparkDLMagics.{self.name} = {{...}}):")
        width = max(len(o.name) for o in self.options) if self.options else 0
        for opt in self.options:
            choices = getattr(opt.convert, "choices", None)
            extra = f" Choices: {', '.join(choices)}." if choices else ""
            grid = " A list makes a grid." if opt.grid else ""
            lines.append(f"  {opt.name:<{width}}  {opt.help}{extra}{grid} "
                         f"[default: {opt.describe_default()}]")
        lines.append(f"  {'--debug':<{width}}  show the full Python/JVM traceback on errors")
        if self.passthrough:
            lines += ["", self.passthrough]
        return "\n".join(lines)


def _identifier(text: str) -> str:
    if not text.isidentifier():
        raise OptionError(f"'-> {text}': the output must be a Python variable name")
    return text


def _read_scalar(text: str, key: str) -> Any:
    """Read a flag value with YAML rules (numbers, booleans, [lists]); else keep the text."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


#: ``track:`` on %%fit, %%finetune and %%evaluate (see :mod:`sparkdl_magics.tracking`).
TRACK = Option("track", None, "log to MLflow: true / false [default: when a tracking URI "
               "is set; sparkdl_magics.tracking.TRACK switches it for the session]", as_bool)


def kwargs_for(call: MagicCall, names: Sequence[str]) -> Dict[str, Any]:
    """The subset of a call's options named in *names* (for passing to the library)."""
    return {n: call.options[n] for n in names if n in call.options}


__all__ = [
    "Option", "MagicSpec", "MagicCall", "as_str", "as_bool", "as_int", "as_float",
    "as_choice", "as_list_of", "as_any", "kwargs_for", "check_number",
]
