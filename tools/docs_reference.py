"""The generated reference pages of the documentation site: an MkDocs hook (``hooks:`` in mkdocs.yml).

At every build it writes, from the code itself, so that they cannot drift from it:

- ``reference/cli.md``: every command and subcommand of ``p2pvision.cli.build_parser()`` with its usage and every
  argument's help, as ``--help`` shows them;
- ``reference/config.md``: every key of the training and benchmark configs (and of any other config schema, i.e.
  any subclass of ``p2pvision.config.Section``), with what it allows, its default and the comment beside its
  declaration;
- ``reference/names.md``: the members of every registry (explainers, removals, partitioners, metrics, benchmark
  method kinds, baselines) with their parameters and defaults;
- ``reference/api/<package>.md``: one page per top-level package or module of p2pvision, one mkdocstrings block per
  public module (the docstrings), and the Reference section of the navigation that lists them.

The functions are plain so that ``tests/test_docs.py`` can check the pages they write.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
PACKAGE = SOURCE / "p2pvision"
if str(SOURCE) not in sys.path:  # the build may run where p2pvision is not installed editable
    sys.path.insert(0, str(SOURCE))

# (title, module, variable) of every registry of named things; their members are listed on reference/names.md.
REGISTRIES = [
    ("Explainers (`p2pvision explain --method`, benchmark `kind: explainer`)", "p2pvision.explain.base", "EXPLAINERS"),
    ("Removals (`--removal`, `removal=`, `model.fill`)", "p2pvision.removal.base", "REMOVALS"),
    ("Partitioners (`model.partition`, `params.partition`)", "p2pvision.regions.partition", "PARTITIONERS"),
    ("Metrics (benchmark `metrics:`, `make_metric`)", "p2pvision.metrics.base", "METRICS"),
    ("Benchmark method kinds (`methods.<name>.kind`)", "p2pvision.benchmark.methods", "METHODS"),
    ("Trained baselines (`train.mode`, benchmark kinds)", "p2pvision.baselines.base", "BASELINES"),
]
CONFIG_ROOTS = [
    ("Training config", "p2pvision.train.experiment", "ExperimentConfig",
     "`p2pvision train --config FILE_OR_NAME [key=value ...]`; shipped names: {shipped}."),
    ("Benchmark config", "p2pvision.benchmark.config", "BenchmarkSchema",
     "`p2pvision benchmark --config FILE_OR_NAME [key=value ...]`; shipped names: {shipped}."),
]  # fmt: skip
USAGE_WIDTH = 88  # columns of the usage lines on the command-line page (they fit the page without scrolling)
HEADING_WORDS = 3  # a one-line comment of at most this many words above a field is a heading, not its description


# ---------------------------------------------------------------------------------------------------------------------
# Text helpers.


def escape(text: str) -> str:
    """``text`` safe inside a Markdown table cell (no HTML, no emphasis, no cell breaks, one line)."""
    text = re.sub(r"\s+", " ", str(text))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", text)


def code(text: str) -> str:
    """``text`` as inline code in a table cell."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def prose(text: str) -> str:
    """A docstring's reST-flavoured prose in a table cell: ````literal```` and ``:role:`name``` become code, the
    rest is escaped."""
    parts = re.split(r"(``.+?``|:[a-z]+:`~?[^`]+`|`[^`]+`)", " ".join(str(text).split()))
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(code(part.strip("`") if part.startswith("`") else part.split("`")[1].lstrip("~")))
        else:
            out.append(escape(part))
    return "".join(out)


def first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def show_value(value: Any) -> str:
    """A default as YAML flow style would write it."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------------------------------------------------------------
# The command line.


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("p2pvision",)) -> Iterator[tuple]:
    """``(path, parser, one-line help)`` of ``parser`` and of every subcommand below it, depth first."""
    yield path, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                for found in commands(sub, (*path, name)):
                    yield found if found[0] != (*path, name) else (found[0], found[1], helps.get(name))


def cli_reference() -> str:
    """The page ``reference/cli.md``."""
    from p2pvision.cli import build_parser

    lines = ["# Command-line reference", "",
             "Generated from the argument parser (`p2pvision.cli.build_parser`) at every build of this site: the same "
             "text as `p2pvision COMMAND --help`. Every command prints one line `p2pvision: error: ...` and exits "
             "with code 2 on a wrong argument or input.", ""]  # fmt: skip
    for path, parser, summary in commands(build_parser()):
        formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
        lines += [f"## `{' '.join(path)}`", ""]
        if summary:
            lines += [prose(summary[:1].upper() + summary[1:]) + ".", ""]
        if parser.description and len(path) > 1:
            lines += [prose(parser.description), ""]
        formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
        lines += ["```text", formatter.format_help().strip(), "```", ""]
        formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for action in subcommands:
            lines += ["| command | what it does |", "|---|---|"]
            for choice in action._choices_actions:
                anchor = "p2pvision-" + "-".join((*path[1:], choice.dest))
                lines.append(f"| [`{' '.join((*path, choice.dest))}`](#{anchor}) | {escape(choice.help or '')} |")
            lines.append("")
        for group in parser._action_groups:
            actions = [a for a in group._group_actions
                       if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]  # fmt: skip
            if not actions:
                continue
            lines += [f"**{escape(group.title or 'arguments')}**", "", "| argument | description |", "|---|---|"]
            for action in actions:
                invocation = formatter._format_action_invocation(action)
                lines.append(f"| {code(invocation)} | {prose(formatter._expand_help(action) if action.help else '')} |")
            lines.append("")
        if parser.epilog:
            lines += ["```text", textwrap.dedent(parser.epilog).strip(), "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The configuration.


def _comment(lines: list[str], comments: dict[int, str], node: ast.AST) -> str:
    """The comment that describes the field declared by ``node``: on its lines, else the block just above it."""
    for row in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        if row in comments:
            return comments[row]
    block: list[str] = []
    row = node.lineno - 1
    while row >= 1 and lines[row - 1].strip().startswith("#"):
        block.insert(0, lines[row - 1].strip().lstrip("#").strip())
        row -= 1
    if len(block) == 1 and len(block[0].split()) <= HEADING_WORDS:
        return ""
    return " ".join(block)


@functools.cache
def declared_fields(module_name: str) -> dict[str, dict[str, str]]:
    """``{class name: {field: comment}}`` for every class of a module, from its source."""
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    lines = source.splitlines()
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        text = token.string.lstrip("#").strip()
        after_code = lines[token.start[0] - 1][: token.start[1]].strip()
        if after_code and not re.match(r"(type|fmt|noqa|pragma)\b", text):
            comments[token.start[0]] = text
    found: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            found[node.name] = {
                item.target.id: _comment(lines, comments, item)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    return found


def field_notes(schema: type) -> dict[str, str]:
    """``{field: comment}`` of a pydantic schema: from its classes' declarations, or from the dataclass its fields
    were made from (``schema_from_dataclass``)."""
    notes: dict[str, str] = {}
    fields = set(schema.model_fields)
    for cls in reversed(schema.__mro__):
        declared = declared_fields(cls.__module__) if cls.__module__.startswith("p2pvision") else {}
        if cls.__name__ in declared:
            notes.update({key: text for key, text in declared[cls.__name__].items() if text})
        elif cls is schema and cls.__module__.startswith("p2pvision"):
            for items in declared.values():  # the dataclass that declares all of the schema's fields
                if fields <= set(items):
                    notes.update({key: text for key, text in items.items() if text})
                    break
    return notes


def source_class(schema: type) -> str:
    """The documented class a schema stands for: itself, or the dataclass it was made from."""
    module = sys.modules[schema.__module__]
    if schema.__name__ in vars(module) and vars(module)[schema.__name__] is schema:
        return f"{schema.__module__}.{schema.__name__}"
    for name, value in vars(module).items():
        fields = getattr(value, "__dataclass_fields__", None)
        if inspect.isclass(value) and fields and set(schema.model_fields) <= set(fields):
            return f"{schema.__module__}.{name}"
    return f"{schema.__module__}.{schema.__name__}"


def sections_in(annotation: Any) -> list[tuple[str, type]]:
    """``(suffix, schema)`` for each config section a field of this type holds: ``("", S)`` for a section,
    ``(".<name>", S)`` for a mapping of names to sections; nothing for a value."""
    from typing import Annotated, Union, get_args, get_origin

    from pydantic import BaseModel

    from p2pvision.config import _Nested, _strip

    base, metadata = _strip(annotation)
    for item in metadata:
        if isinstance(item, _Nested):
            return [("", item.schema)]
    origin, args = get_origin(base), get_args(base)
    if isinstance(base, type) and issubclass(base, BaseModel):
        return [("", base)]
    if origin is Annotated:
        return sections_in(base)
    if origin is Union or type(base).__name__ == "UnionType":
        return [found for arg in args for found in sections_in(arg)]
    if origin is dict and len(args) == 2:
        return [(".<name>" + suffix, schema) for suffix, schema in sections_in(args[1])]
    return []


def schema_rows(schema: type, prefix: str, seen: dict[type, str]) -> Iterator[tuple[str, str, str, str]]:
    """``(key, allowed, default, notes)`` for every key of ``schema`` below ``prefix``, sections depth first; a
    section whose schema is in ``seen`` (schema: its first key) refers to it instead of repeating its keys."""
    from pydantic_core import PydanticUndefined

    from p2pvision.config import allowed

    seen.setdefault(schema, prefix)
    notes = field_notes(schema)
    for name, info in schema.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = info.annotation if not info.metadata else _annotated(info)
        sections = sections_in(annotation)
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "required"
        elif sections and len(sections) == 1 and sections[0][0] == "":
            default = ""  # a section's defaults are those of its keys
        else:
            default = show_value(info.get_default(call_default_factory=True))
        note = notes.get(name, "") or info.description or _validator_note(annotation)
        if not sections:
            rule = allowed(annotation).removeprefix("must be ").replace("allowed: ", "one of: ", 1)
            yield key, rule, default, note
            continue
        for suffix, section in sections:
            extra = " (other keys allowed, see notes)" if section.model_config.get("extra") == "allow" else ""
            what = schema_doc(section)
            rule = ("a mapping of names to sections" if suffix else "a section") + extra
            if section in seen and seen[section] != key + suffix:
                yield key + suffix, rule, default, f"the keys of `{seen[section]}` (above)"
                continue
            yield key + suffix, rule, default, " ".join(filter(None, [note, first_paragraph(what)]))
            yield from schema_rows(section, key + suffix, seen)


def _validator_note(annotation: Any) -> str:
    """The docstring of a p2pvision check attached to a field's type (``AfterValidator(check_partition)``)."""
    from typing import get_args

    for item in get_args(annotation)[1:]:
        check = getattr(item, "func", None)
        if getattr(check, "__module__", "").startswith("p2pvision") and check.__doc__:
            return first_paragraph(check.__doc__)
    return ""


def _annotated(info: Any) -> Any:
    from typing import Annotated

    arguments = (info.annotation, *info.metadata)
    return Annotated[arguments]


def section_schemas() -> list[type]:
    """Every config schema: the subclasses of ``p2pvision.config.Section`` in modules that import it (found in the
    source, then imported), except private ones."""
    from p2pvision.config import Section

    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bSection\b", text) and "p2pvision.config import" in text.replace("\n", " ") + " ":
            parts = path.relative_to(SOURCE).with_suffix("").parts
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    found, pending = [], [Section]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if not sub.__name__.startswith("_"):
                found.append(sub)
    return found


def config_table(rows: list[tuple]) -> list[str]:
    lines = ["| key | allowed | default | notes |", "|---|---|---|---|"]
    for key, rule, default, note in rows:
        lines.append(f"| {code(key)} | {escape(rule)} | {code(default) if default else ''} | {prose(note)} |")
    return lines + [""]


def schema_doc(schema: type) -> str:
    """The docstring of a schema's own class, or of the dataclass it was made from (not a base class's)."""
    own = schema.__dict__.get("__doc__")
    if own:
        return inspect.cleandoc(own)
    module, name = source_class(schema).rsplit(".", 1)
    found = vars(importlib.import_module(module)).get(name)
    return inspect.cleandoc(found.__doc__ or "") if found is not None and found is not schema else ""


def config_reference() -> str:
    """The page ``reference/config.md``."""
    from p2pvision.config import SHIPPED, shipped_names

    lines = ["# Configuration reference", "",
             "Generated from the pydantic schemas (`p2pvision.config.Section` and its subclasses) at every build of "
             "this site. Every key is checked when a config loads, before any data or model work; a wrong one "
             "prints one line naming the dotted key, the value and what is allowed, and exits with code 2. Set any "
             "key on the command line as `key=value` (values are parsed as YAML: `train.epochs=3`, "
             "`train.val_tau_grid=[0.1,0.5]`, `model.partition={name: grid, grid: 8}`). Keys marked `<name>` are "
             "names you choose. The named things a config refers to (removals, partitioners, explainers, metrics, "
             "method kinds) are listed in [Named things](names.md).", ""]  # fmt: skip
    seen: dict[type, str] = {}
    for title, module, name, usage in CONFIG_ROOTS:
        schema = getattr(importlib.import_module(module), name)
        folder = SHIPPED / "benchmark" if "benchmark" in module else SHIPPED
        lines += [f"## {title}", "", usage.format(shipped=", ".join(f"`{n}`" for n in shipped_names(folder))), "",
                  f"Schema: `{module}.{name}`. {prose(first_paragraph(schema_doc(schema)))}", ""]  # fmt: skip
        lines += config_table(list(schema_rows(schema, "", seen)))
    others = [schema for schema in section_schemas()
              if schema not in seen and not any(issubclass(known, schema) for known in seen)]  # fmt: skip
    if others:
        lines += ["## Other schemas", "",
                  "Config schemas that the files above do not hold directly (settings stored with a checkpoint, "
                  "sections checked on their own).", ""]  # fmt: skip
        for schema in others:
            where = source_class(schema)
            lines += [f"### `{schema.__name__}`", "",
                      f"Schema: `{where}`. {prose(first_paragraph(schema_doc(schema)))}", ""]  # fmt: skip
            lines += config_table(list(schema_rows(schema, "", {})))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Named things.


def names_reference() -> str:
    """The page ``reference/names.md``: the members of every registry."""
    lines = ["# Named things", "",
             "Generated from the registries (`p2pvision.registry.Registry`) at every build of this site: every name "
             "a command, a config or a `make_*` function accepts, with its aliases and the parameters of its "
             "constructor (a new member, one decorated class in its package, appears here by itself).", ""]  # fmt: skip
    for title, module, variable in REGISTRIES:
        registry = getattr(importlib.import_module(module), variable)
        aliases: dict[str, list[str]] = {}
        for alias, name in registry.aliases().items():
            aliases.setdefault(name, []).append(alias)
        lines += [f"## {title}", "", f"Registry: `{module}.{variable}`.", "",
                  "| name | class | parameters (defaults) | what it is |", "|---|---|---|---|"]  # fmt: skip
        for name, entry in registry.items():
            shown = name + (f" ({', '.join(aliases[name])})" if name in aliases else "")
            parameters = []
            for key, default in registry.parameters(name).items():
                parameters.append(key if default is inspect.Parameter.empty else f"{key}={default!r}")
            where = f"{entry.__module__}.{entry.__qualname__}"
            lines.append(f"| {code(shown)} | {code(where)} | {escape(', '.join(parameters))} | "
                         f"{prose(first_paragraph(entry.__doc__))} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The API.


def public_modules() -> dict[str, list[str]]:
    """``{top-level package or module: [its public modules]}``: every module whose dotted name has no part starting
    with an underscore, found in the source tree."""
    pages: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts) or len(parts) < 2:
            continue
        pages.setdefault(parts[1], []).append(".".join(parts))
    return {page: sorted(modules, key=lambda m: (m.count("."), m)) for page, modules in sorted(pages.items())}


def api_page(page: str, modules: list[str]) -> str:
    """The page ``reference/api/<page>.md``: the docstrings of ``modules``."""
    lines = [f"# `p2pvision.{page}`", "",
             "Generated from the docstrings at every build of this site.", ""]  # fmt: skip
    for module in modules:
        lines += [f"::: {module}", "    options:", "      members_order: source", ""]
    return "\n".join(lines)


def reference_pages() -> dict[str, str]:
    """``{path under docs/: Markdown}`` of every generated page."""
    pages = {"reference/cli.md": cli_reference(), "reference/config.md": config_reference(),
             "reference/names.md": names_reference()}  # fmt: skip
    for page, modules in public_modules().items():
        pages[f"reference/api/{page}.md"] = api_page(page, modules)
    return pages


def reference_nav() -> dict[str, list]:
    api = [{f"p2pvision.{page}": f"reference/api/{page}.md"} for page in public_modules()]
    return {"Reference": [{"Command line": "reference/cli.md"}, {"Configuration": "reference/config.md"},
                          {"Named things": "reference/names.md"}, {"API": api}]}  # fmt: skip


class ReSTRoles(griffe.Extension):
    """Docstrings name objects with reST roles (``:class:`Explanation```, ``:func:`~p2pvision.config.validate```);
    rendered as Markdown they become inline code (a griffe extension, named in mkdocs.yml)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", obj.docstring.value)


# ---------------------------------------------------------------------------------------------------------------------
# The MkDocs hook.


def on_config(config: Any) -> Any:
    config["nav"] = [*(config["nav"] or []), reference_nav()]
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in reference_pages().items():
        files.append(File.generated(config, path, content=content))
    return files
