"""Command-line flags derived from a config dataclass: one place for each default and help text.

    add_flags(parser, FeatureSettings, only=["feature_set", "target_fps"])   # --feature-set, --target-fps
    settings = FeatureSettings(**given(args, FeatureSettings))               # only the flags the user set

A field's flag is `--<name with dashes>` (or `rename[name]`), its type the field's annotation (bool fields
become `--flag/--no-flag`), its help the field's `metadata["help"]` plus "(default: X)" read from the
dataclass. The parser's own default is None, so `given()` can tell a flag the user typed from one left out: a
preset (such as a smoke test) or a config file then fills the rest, and the dataclass default stays the one
source.

`types={name: converter}` overrides a field's converter (e.g. one that reads "none" for an optional field: it
returns `NONE`, which `given()` turns into an explicit None), `choices={name: (...)}` limits its values, and
`HelpFormatter` shows argparse defaults except None (the derived flags already say their default).
`ArgumentParser` is argparse's with one change: a usage error is ONE line on stderr (`prog: error: ...`,
exit 2), like every other user error of this project (docs/contracts.md); `check_range` checks lower bounds.
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class _ExplicitNone:
    """A flag value meaning "the user typed none": `given()` returns it as None (None itself = not typed)."""

    def __repr__(self) -> str:
        return "NONE"


NONE = _ExplicitNone()


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose usage errors are one line (exit 2) instead of the usage block + line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def check_range(parser: argparse.ArgumentParser, args: argparse.Namespace, low: dict[str, float]) -> None:
    """`parser.error` (one line, exit 2) for the first flag whose value is below its bound:
    `low={"--workers": 1, "--max-gap-s": 0}` (values None = not given are skipped)."""
    for flag, bound in low.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and value is not NONE and value < bound:
            parser.error(f"argument {flag}: must be >= {bound} (got {value})")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Like ArgumentDefaultsHelpFormatter, but no "(default: None)" (derived flags print their own)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _type_of(f, cls) -> type | None:
    hint = typing.get_type_hints(cls).get(f.name, f.type)
    if isinstance(hint, str):
        hint = _TYPES.get(hint.split("|")[0].strip())
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:  # Optional[X] / X | None
        hint = args[0]
    return hint if hint in (int, float, str, bool) else None


def default_of(cls, name: str):
    f = {f.name: f for f in fields(cls)}[name]
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def flag_name(name: str, rename: dict | None = None) -> str:
    return "--" + (rename or {}).get(name, name.replace("_", "-"))


def add_flags(parser: argparse.ArgumentParser, cls, only: list[str] | None = None, *,
              rename: dict | None = None, extra_help: dict | None = None, defaults: dict | None = None,
              types: dict | None = None, choices: dict | None = None) -> None:
    """Add one flag per dataclass field in `only` (all scalar fields when None); parser default None.

    `defaults` overrides the "(default: X)" shown for a field (e.g. a value the launcher derives); `types`
    a field's converter (it may return `NONE`); `choices` the allowed values of a field."""
    by_name = {f.name: f for f in fields(cls)}
    for name in only if only is not None else list(by_name):
        f = by_name[name]
        typ = _type_of(f, cls)
        conv = (types or {}).get(name, typ)
        if typ is None:
            if only is not None:
                raise TypeError(f"{cls.__name__}.{name}: no flag for type {f.type}")
            continue
        shown = (defaults or {}).get(name, default_of(cls, name))
        text = " ".join(x for x in (f.metadata.get("help", ""), (extra_help or {}).get(name, "")) if x)
        text = f"{text} (default: {shown!r})" if text else f"(default: {shown!r})"
        flag = flag_name(name, rename)
        if typ is bool:
            parser.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                                help=text.replace("%", "%%"))
        else:
            if name in (choices or {}):
                extra = {"choices": choices[name]}
            else:
                extra = {"metavar": typ.__name__.upper()}
            parser.add_argument(flag, dest=name, type=conv, default=None, help=text.replace("%", "%%"),
                                **extra)


def given(args: argparse.Namespace, cls, only: list[str] | None = None) -> dict:
    """The fields of `cls` whose flags the user typed (value not None)."""
    names = only if only is not None else [f.name for f in fields(cls)]
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return {n: None if v is NONE else v for n, v in out.items()}
