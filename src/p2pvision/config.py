"""The configuration layer: YAML files or shipped names, ``key=value`` overrides, validation, one-line errors.

Every configuration of p2pvision (training experiments, P2P settings, benchmarks, ``--param`` options) goes through
this module: :func:`read_config` reads a YAML file or a shipped config by name, :func:`apply_overrides` sets dotted
keys (``train.epochs=3``; values are parsed as YAML), and :func:`validate` checks the result against a schema and
turns every problem into one line that names the dotted key, the value given and what is allowed::

    train.epochs: got -1; must be an integer >= 1
    train.trainer.precision: got 'bogus'; allowed: 32-true, 16-mixed, bf16-mixed, ...
    unknown key train.epoch; known keys of train: mode, epochs, ... (did you mean 'epochs'?)

Schemas are pydantic (v2) models, chosen over OmegaConf because pydantic checks ranges and choices where the field
is declared (``Annotated[int, Field(ge=1)]``, ``Literal[...]``) and reports each problem with a structured location
and the constraint it broke, which is what the messages above are made of; OmegaConf checks types only.
This module imports nothing of p2pvision but its errors.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from p2pvision.errors import ConfigError, path_problem

SHIPPED = Path(__file__).resolve().parent / "configs"  # training configs; benchmark configs in SHIPPED / "benchmark"

M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------------------------------------------------------------
# Field types with ranges. A boolean is not accepted as a number, nor inf/nan as a setting.


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
PositiveInt = Annotated[Int, Field(ge=1)]
NonNegativeInt = Annotated[Int, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
Fraction = Annotated[Float, Field(gt=0, le=1)]  # (0, 1]
OpenFraction = Annotated[Float, Field(gt=0, lt=1)]  # (0, 1)
Probability = Annotated[Float, Field(ge=0, le=1)]  # [0, 1]
Name = Annotated[str, Field(min_length=1)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, and so are wrong values set later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------------------------------------------
# Reading files and overrides.


def parse_value(text: str, key: str = "value") -> Any:
    """``text`` parsed as YAML (``3`` -> 3, ``[0, 1]`` -> list, ``true``, ``null``; anything else a string)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"{key}: cannot parse {text!r} as a YAML value ({problem})") from None


def parse_assignment(text: str, example: str = "train.epochs=3") -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", parsed VALUE)``; a one-line ConfigError if it is not of that form."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"'{text}' is not of the form key=value (e.g. {example})")
    return key, parse_value(raw, key)


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str], example: str = "train.epochs=3") -> dict:
    """A copy of ``data`` with dotted ``key=value`` overrides set; missing sections are created."""
    result: dict[str, Any] = copy.deepcopy(dict(data))
    for item in overrides:
        key, value = parse_assignment(item, example)
        parts = key.split(".")
        target = result
        for depth, part in enumerate(parts[:-1]):
            if target.get(part) is None:
                target[part] = {}
            section = target[part]
            if not isinstance(section, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{where}: got {show(section)}, a value, not a section; cannot set {key}")
            target = section
        target[parts[-1]] = value
    return result


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """``base`` updated with ``override``, section by section (nested mappings are merged, other values replaced)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def shipped_names(folder: Path = SHIPPED) -> list[str]:
    """Names of the YAML configs in ``folder`` (usable instead of a path)."""
    return sorted(path.stem for path in folder.glob("*.yaml"))


def resolve_config(path: str | Path, folder: Path = SHIPPED, what: str = "config file") -> Path:
    """A YAML file, or the path of the config named ``path`` in ``folder``; a ConfigError listing the names."""
    path = Path(path)
    if not path.is_file() and path.suffix == "" and (folder / f"{path}.yaml").is_file():
        path = folder / f"{path}.yaml"
    problem = path_problem(path)
    if problem is not None:
        names = shipped_names(folder)
        close = difflib.get_close_matches(str(path), names, n=1) if path.suffix == "" else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{what} '{path}' {problem}{hint}: give a YAML file or a shipped name ({', '.join(names)})")
    return path


def read_config(path: str | Path, folder: Path = SHIPPED, what: str = "config file") -> tuple[Path, dict]:
    """The resolved path (see :func:`resolve_config`) and its YAML mapping (``{}`` for an empty file)."""
    path = resolve_config(path, folder, what)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} '{path}' cannot be read: {exc}") from None
    if data is None:
        return path, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping of keys to values, got {type(data).__name__}")
    return path, data


# ---------------------------------------------------------------------------------------------------------------------
# Validation.


def validate(schema: type[M], data: Any, prefix: str = "", context: dict[str, Any] | None = None) -> M:
    """``schema`` validated from ``data``; a one-line :class:`ConfigError` (see :func:`format_error`) otherwise.
    ``prefix`` is the dotted key of ``data`` in the whole config (e.g. ``"model"``)."""
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as error:
        raise ConfigError(format_error(error, schema, data, prefix)) from None


def error_at(key: str | int | tuple, value: Any, message: str) -> ValidationError:
    """A validation error at ``key`` (relative to the section being validated) that reads
    ``<key>: got <value>; <message>``; raise it inside a validator."""
    loc = key if isinstance(key, tuple) else (key,)
    custom = PydanticCustomError("config_value", "{message}", {"message": message})
    return ValidationError.from_exception_data("config", [InitErrorDetails(type=custom, loc=loc, input=value)])


def nested(schema: type[BaseModel], partial: bool = False) -> Any:
    """The type of a section kept as a plain dict of the keys given, validated by ``schema`` (with
    ``context={"partial": True}`` when ``partial``: checks that relate keys are left to the whole config)."""

    def check(value: Any) -> dict[str, Any]:
        context = {"partial": True} if partial else None
        return schema.model_validate(value, context=context).model_dump(exclude_unset=True)

    return Annotated[dict[str, Any], BeforeValidator(check), _Nested(schema)]


def is_partial(info: Any) -> bool:
    """Whether a validator runs on a partial section (see :func:`nested`)."""
    return bool(getattr(info, "context", None) and info.context.get("partial"))


@dataclasses.dataclass(frozen=True)
class _Nested:
    schema: type[BaseModel]


def check_arguments(
    function: Callable[..., Any], values: Mapping[str, Any], skip: Iterable[str] = (), extra: Iterable[str] = ()
) -> Mapping[str, Any]:
    """Check keyword arguments for ``function`` (or a class) against its signature: unknown names, and values
    that do not fit the parameters' annotations (ranges too, where the annotation has them). ``skip``: parameters
    that cannot be given; ``extra``: names accepted besides the signature's. Raises a ValidationError located at
    the keys (use inside a validator, or wrap in :func:`validate`); returns ``values`` unchanged."""
    parameters = _parameters(function)
    known = [name for name in parameters if name not in set(skip)] + list(extra)
    errors = []
    for key, value in values.items():
        if key not in known:
            errors.append(_unknown(key, value, known))
            continue
        if key not in parameters:
            continue
        annotation = parameters[key]
        if isinstance(value, bool) and not _accepts_bool(annotation):
            ok = False
        else:
            try:
                _adapter(annotation).validate_python(value)
                ok = True
            except ValidationError:
                ok = False
        if not ok:
            custom = PydanticCustomError("config_value", "{message}", {"message": allowed(annotation)})
            errors.append(InitErrorDetails(type=custom, loc=(key,), input=value))
    if errors:
        raise ValidationError.from_exception_data("arguments", errors)
    return values


def check_call(
    function: Callable[..., Any], values: Mapping[str, Any], skip: Iterable[str] = (), extra: Iterable[str] = ()
) -> Any:
    """:func:`check_arguments`, then ``function(**values)``, whose own checks (a ConfigError) become an error at
    the parameter its message starts with (else at the section itself). Returns what ``function`` returns."""
    check_arguments(function, values, skip, extra)
    try:
        return function(**values)
    except ConfigError as exc:
        message = str(exc)
        key = next((k for k in sorted(values, key=len, reverse=True) if message.startswith(f"{k} ")), None)
        if key is None:
            raise ValidationError.from_exception_data("arguments", [_message((), values, message)]) from None
        raise ValidationError.from_exception_data(
            "arguments", [_message((key,), values[key], message.removeprefix(f"{key} "))]
        ) from None


def message_at(key: str | int | tuple, value: Any, message: str) -> ValidationError:
    """A validation error at ``key`` that reads ``<key>: <message>`` (the message says what was wrong)."""
    return ValidationError.from_exception_data("config", [_message(key if isinstance(key, tuple) else (key,), value,
                                                                    message)])  # fmt: skip


def prefixed(error: ValidationError, *keys: str | int) -> ValidationError:
    """``error`` with its locations inside ``keys`` (an error of a sub-section checked on its own)."""
    details = []
    for problem in error.errors(include_url=False):
        name, ctx = problem["type"], problem.get("ctx") or {}
        kind: str | PydanticCustomError = name
        if name in ("config_value", "config_message"):
            kind = PydanticCustomError(name, "{message}", {"message": ctx["message"]})
        elif name == "unknown_key":
            kind = PydanticCustomError(name, "unknown key", {"known": ctx["known"]})
        detail = InitErrorDetails(type=kind, loc=(*keys, *problem["loc"]), input=problem.get("input"))
        if ctx and isinstance(kind, str):
            detail["ctx"] = ctx
        details.append(detail)
    return ValidationError.from_exception_data(error.title, details)


def _message(loc: tuple, value: Any, message: str) -> InitErrorDetails:
    custom = PydanticCustomError("config_message", "{message}", {"message": message})
    return InitErrorDetails(type=custom, loc=loc, input=value)


def _unknown(key: str, value: Any, known: Sequence[str]) -> InitErrorDetails:
    custom = PydanticCustomError("unknown_key", "unknown key", {"known": list(known)})
    return InitErrorDetails(type=custom, loc=(key,), input=value)


@functools.cache
def _parameters(function: Callable[..., Any]) -> dict[str, Any]:
    """``{name: annotation}`` of the keyword parameters of ``function`` (Any where an annotation cannot be read)."""
    try:
        signature = inspect.signature(function, eval_str=True)
        resolved = True
    except Exception:  # an annotation names something imported only for type checkers
        signature, resolved = inspect.signature(function), False
    names = getattr(getattr(function, "__init__", function), "__globals__", {})
    found = {}
    for name, parameter in signature.parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = parameter.annotation
        if annotation is parameter.empty:
            annotation = Any
        elif isinstance(annotation, str) and not resolved:
            try:
                annotation = eval(annotation, dict(names))  # noqa: S307 - the function's own annotation
            except Exception:
                annotation = Any
        found[name] = annotation
    return found


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))


def _accepts_bool(annotation: Any) -> bool:
    if annotation is Any or annotation is bool:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _accepts_bool(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_accepts_bool(arg) for arg in get_args(annotation))
    if origin is Literal:
        return any(isinstance(arg, bool) for arg in get_args(annotation))
    return not (isinstance(annotation, type) and issubclass(annotation, (int, float, str)))


def schema_from_dataclass(
    cls: type, name: str | None = None, exclude: Iterable[str] = (), base: type[BaseModel] = Section
) -> type[BaseModel]:
    """A pydantic model with the fields of the dataclass ``cls`` (their annotated types and defaults), on ``base``
    (which may add validators that relate fields); the dataclass's fields are declared once."""
    from pydantic import create_model

    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name in set(exclude):
            continue
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=item.default_factory)
        else:
            default = ...
        fields[item.name] = (hints[item.name], default)
    return create_model(name or cls.__name__, __base__=base, __module__=cls.__module__, **fields)


# ---------------------------------------------------------------------------------------------------------------------
# One-line messages.


def show(value: Any) -> str:
    """A value as the user would write it: strings quoted, the rest in JSON/YAML flow style, at most 80 characters."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_error(error: ValidationError, schema: type[BaseModel] | None, data: Any, prefix: str = "") -> str:
    """One line for the first problem of ``error``: ``<dotted key>: got <value>; <what is allowed>``, or
    ``unknown key <dotted key>; known keys of <section>: ...``."""
    problems = error.errors(include_url=False)
    first = problems[0]
    keys = _user_keys(first["loc"], data, first["type"])
    # Members of a union report one error each at the same key: they describe one value.
    group = [p for p in problems if _user_keys(p["loc"], data, p["type"]) == keys]
    dotted = _dotted(prefix, keys)
    kind, ctx = first["type"], first.get("ctx") or {}
    if kind in ("extra_forbidden", "unknown_key"):
        known = ctx.get("known")
        if known is None:
            known = _known_keys(schema, keys[:-1]) if schema is not None else []
        parent = _dotted(prefix, keys[:-1])
        close = difflib.get_close_matches(str(keys[-1]), [str(k) for k in known], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = f"known keys of {parent}" if parent else "known keys"
        return f"unknown key {dotted}; {where}: {', '.join(map(str, known)) or 'none'}{hint}"
    if kind == "config_value":
        return f"{dotted}: got {show(first['input'])}; {ctx['message']}"
    if kind == "config_message":
        return f"{dotted}: {ctx['message']}" if dotted else ctx["message"]
    if kind == "value_error":
        return f"{dotted}: {ctx.get('error', first['msg'])}"
    annotation = _annotation_at(schema, keys) if schema is not None else None
    rule = allowed(annotation) if annotation is not None else " or ".join(dict.fromkeys(_fallback(p) for p in group))
    if kind == "missing":
        return f"{dotted}: missing; {rule}"
    return f"{dotted}: got {show(first['input'])}; {rule}"


def _dotted(prefix: str, keys: Sequence[Any]) -> str:
    """``("train", "val_tau_grid", 1)`` -> ``"train.val_tau_grid[1]"``."""
    text = prefix
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else str(key)
    return text


def _user_keys(loc: tuple, data: Any, kind: str) -> tuple:
    """The keys of ``loc`` that are keys of the user's data (pydantic adds union member names to locations)."""
    keys: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, Mapping) and part in node:
            keys.append(part)
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            keys.append(part)
            node = node[part]
        elif index == len(loc) - 1 and kind == "missing":
            keys.append(part)
    return tuple(keys)


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, ...]`` -> ``(T, metadata)``."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata = more + metadata
    return annotation, metadata


def _field_type(info: FieldInfo) -> Any:
    arguments = (info.annotation, *info.metadata)  # a variable: mypy reads X[(a, *b)] as 3.11's X[a, *b]
    return Annotated[arguments] if info.metadata else info.annotation


def _annotation_at(schema: Any, keys: Sequence[Any]) -> Any:
    """The annotated type found at ``keys`` below ``schema``, or None."""
    current = schema
    for key in keys:
        current = _descend(current, key)
        if current is None:
            return None
    return current


def _descend(annotation: Any, key: Any) -> Any:
    base, metadata = _strip(annotation)
    for item in metadata:
        if isinstance(item, _Nested):
            base = item.schema
    if isinstance(base, type) and issubclass(base, BaseModel):
        info = base.model_fields.get(key)
        return _field_type(info) if info is not None else None
    origin, args = get_origin(base), get_args(base)
    if origin in (Union, types.UnionType):
        for arg in args:
            found = _descend(arg, key)
            if found is not None:
                return found
        return None
    if origin in (dict, Mapping) and len(args) == 2 and not isinstance(key, int):
        return args[1]
    if origin in (list, tuple, Sequence) and isinstance(key, int) and args:
        if origin is tuple and args[-1] is not Ellipsis:
            return args[key] if key < len(args) else None
        return args[0]
    return None


def _known_keys(schema: Any, keys: Sequence[Any]) -> list[str]:
    annotation = _annotation_at(schema, keys) if keys else schema
    base, metadata = _strip(annotation)
    for item in metadata:
        if isinstance(item, _Nested):
            base = item.schema
    if isinstance(base, type) and issubclass(base, BaseModel):
        return list(base.model_fields)
    return []


def allowed(annotation: Any) -> str:
    """What a value of ``annotation`` may be: ``"must be an integer >= 1"``, ``"allowed: a, b, c"``..."""
    phrase = _phrase(annotation)
    if phrase.startswith("one of "):
        return "allowed: " + phrase.removeprefix("one of ")
    return "must be " + phrase


_BASIC = {
    bool: ("true or false", "true or false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _phrase(annotation: Any, plural: bool = False) -> str:
    base, metadata = _strip(annotation)
    for item in metadata:
        if isinstance(item, _Nested):
            base = item.schema
    origin, args = get_origin(base), get_args(base)
    if base is Any:
        return "values" if plural else "any value"
    if origin in (Union, types.UnionType):
        parts = [_phrase(arg, plural) for arg in args if arg is not type(None)]
        literal = [arg for arg in args if get_origin(_strip(arg)[0]) is Literal]
        if len(literal) == len(parts):  # only choices: one list
            parts = ["one of " + ", ".join(_plain(v) for arg in literal for v in get_args(_strip(arg)[0]))]
        text = " or ".join(parts)
        return text + (" or null" if type(None) in args else "")
    if origin is Literal:
        choices = ", ".join(_plain(value) for value in args)
        return choices if len(args) == 1 else f"one of {choices}"
    bounds = _bounds(metadata)
    if base in _BASIC:
        text = _BASIC[base][plural]
        if base is str and bounds.startswith(" of at least 1"):
            return "a non-empty string" if not plural else "non-empty strings"
        return text + bounds
    if origin in (list, tuple, Sequence) or base in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = list(dict.fromkeys(_phrase(arg, True) for arg in args))
            text = f"a list of {len(args)} {' or '.join(items)}"
        else:
            text = f"a list of {_phrase(args[0], True)}" if args else "a list"
        return ("lists" + text.removeprefix("a list") if plural else text) + _length(metadata)
    if origin in (dict, Mapping) or base in (dict, Mapping):
        return "mappings" if plural else "a mapping"
    if isinstance(base, type) and issubclass(base, BaseModel):
        keys = ", ".join(base.model_fields)
        return f"a section (keys: {keys})" if keys and not plural else "a section"
    return getattr(base, "__name__", str(base))


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _constraints(metadata: Sequence[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update(_constraints(item.metadata))
        for name in ("gt", "ge", "lt", "le", "min_length", "max_length"):
            value = getattr(item, name, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                found[name] = value
    return found


def _bounds(metadata: Sequence[Any]) -> str:
    c = _constraints(metadata)
    low = ("(", c["gt"]) if "gt" in c else ("[", c["ge"]) if "ge" in c else None
    high = (c["lt"], ")") if "lt" in c else (c["le"], "]") if "le" in c else None
    if "min_length" in c and not (low or high):
        return f" of at least {c['min_length']} character{'s' if c['min_length'] != 1 else ''}"
    if low and high:
        return f" in {low[0]}{_number(low[1])}, {_number(high[0])}{high[1]}"
    if low:
        return f" {'>' if low[0] == '(' else '>='} {_number(low[1])}"
    if high:
        return f" {'<' if high[1] == ')' else '<='} {_number(high[0])}"
    return ""


def _length(metadata: Sequence[Any]) -> str:
    c = _constraints(metadata)
    if "min_length" in c and c["min_length"] > 0:
        return f" (at least {c['min_length']})"
    return ""


_FALLBACK = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "bool_not_number": "must be a number",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a section (a mapping)",
    "model_attributes_type": "must be a section (a mapping)",
    "dataclass_type": "must be a section (a mapping)",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
}
_COMPARISONS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _fallback(problem: Mapping[str, Any]) -> str:
    kind, ctx = problem["type"], problem.get("ctx") or {}
    if kind in _FALLBACK:
        return _FALLBACK[kind]
    if kind in _COMPARISONS:
        return f"must be {_COMPARISONS[kind]} {_number(next(iter(ctx.values())))}"
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected', '')}".replace("'", "")
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    message = str(problem.get("msg", "is invalid"))
    return message[:1].lower() + message[1:]
