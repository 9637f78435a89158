"""One registry mechanism for every family of named things (explainers, metrics, removals, partitioners,
benchmark methods, baselines), in the style of timm: a decorator in the defining module, aliases resolved in one
place, ``names()`` and ``create(name, **params)``.

A family's registry knows the package its members live in and imports every module of it on first use, so a new
member is one new file with a decorated class: nothing else has to list it::

    EXPLAINERS = Registry("explainer", package="p2pvision.explain")

    @EXPLAINERS.register(aliases=("rise_saliency",))
    class RISE(PerturbationExplainer):
        name = "rise"

The parameters of a member are declared once, by its constructor's signature: :meth:`Registry.parameters` reads
them (for command-line help), and :meth:`Registry.create` refuses unknown ones with a one-line error that lists the
known ones.

:class:`DeclaredRegistry` reads the same names, aliases and constructor parameters from the package's source (its
``@REGISTRY.register(...)`` decorators) without importing the members, so that the command line can check a name
or a parameter before torch loads; a test compares it with the registry.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from p2pvision.errors import ConfigError

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Named constructors of one ``kind`` (used in error messages), optionally discovered in ``package``."""

    def __init__(self, kind: str, package: str | None = None, name_attribute: str = "name") -> None:
        self.kind = kind
        self.name_attribute = name_attribute
        self.package = package
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._discovered = package is None

    def register(self, name: str | None = None, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Class (or function) decorator: make the decorated object available as ``name`` (default: its
        ``name_attribute``, else its ``__name__``) and ``aliases``."""

        def decorate(entry: T) -> T:
            nonlocal name
            name = name or getattr(entry, self.name_attribute, None) or entry.__name__
            for key in (name, *aliases):
                known = self._entries.get(key) or self._entries.get(self._aliases.get(key, ""))
                if known is not None and known is not entry and _qualname(known) != _qualname(entry):
                    raise ValueError(f"{self.kind} name '{key}' is registered twice")
            self._entries[name] = entry
            self._aliases.update(dict.fromkeys(aliases, name))
            return entry

        return decorate

    def _discover(self) -> None:
        if self._discovered or self.package is None:  # a registry without a package is discovered from the start
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> list[str]:
        """Registered names, in registration order (aliases not included)."""
        self._discover()
        return list(self._entries)

    def aliases(self) -> dict[str, str]:
        """``{alias: name}``."""
        self._discover()
        return dict(self._aliases)

    def resolve(self, name: str) -> str:
        """The registered name of ``name`` or of its alias; a one-line ConfigError (with a suggestion) if unknown."""
        self._discover()
        return _resolve(self.kind, name, list(self._entries), self._aliases)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries or name in self._aliases

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        return [(name, self._entries[name]) for name in self.names()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def get(self, name: str) -> T:
        """The registered class or function of ``name`` (or of its alias)."""
        return self._entries[self.resolve(name)]

    def parameters(self, name: str, skip: Iterable[str] = ()) -> dict[str, Any]:
        """``{parameter: default}`` of ``name``'s constructor (``inspect.Parameter.empty`` where required),
        without ``skip`` and ``*args``/``**kwargs``."""
        skipped = set(skip)
        signature = inspect.signature(self.get(name))
        return {
            key: parameter.default
            for key, parameter in signature.parameters.items()
            if key not in skipped and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }

    def create(self, name: str, *args: Any, **params: Any) -> Any:
        """Build ``name`` with positional ``args`` and keyword ``params``; unknown or missing parameters give a
        one-line ConfigError naming them and the known ones."""
        entry = self.get(name)
        resolved = self.resolve(name)
        try:
            bound = inspect.signature(entry).bind(*args, **params)
        except TypeError as error:
            known = ", ".join(self.parameters(resolved)) or "none"
            raise ConfigError(f"invalid parameters for {self.kind} '{resolved}': {error}; known: {known}") from None
        return entry(*bound.args, **bound.kwargs)


def _listing(names: Sequence[str], aliases: Mapping[str, str]) -> str:
    also: dict[str, list[str]] = {}
    for alias, name in aliases.items():
        also.setdefault(name, []).append(alias)
    return ", ".join(name + (f" ({', '.join(also[name])})" if name in also else "") for name in names)


def _resolve(kind: str, name: object, names: Sequence[str], aliases: Mapping[str, str]) -> str:
    """``name`` or the name its alias stands for; else a one-line ConfigError with a suggestion and the choices."""
    if not isinstance(name, str):
        raise ConfigError(f"{kind} name must be a string, got {name!r}; choose one of {_listing(names, aliases)}")
    if name in names:
        return name
    if name in aliases:
        return aliases[name]
    close = difflib.get_close_matches(name, [*names, *aliases], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown {kind} '{name}'{hint}; choose one of {_listing(names, aliases)}")


def _qualname(entry: Any) -> str:
    return f"{getattr(entry, '__module__', '')}.{getattr(entry, '__qualname__', repr(entry))}"


@dataclass(frozen=True)
class DeclaredParameter:
    """A constructor parameter as its source writes it: annotation and default as source text (None: absent)."""

    annotation: str | None
    default: str | None


@dataclass(frozen=True)
class Declared:
    """A registered class as its module's source declares it (see :class:`DeclaredRegistry`)."""

    name: str
    aliases: tuple[str, ...]
    module: str
    cls: str
    ancestors: tuple[str, ...]  # its base classes' names, nearest first; those of the package followed up
    parameters: dict[str, DeclaredParameter] | None  # the constructor's, without self; None: not in the package
    any_keyword: bool  # the constructor takes **kwargs
    imports: dict[str, str]  # ``{local name: "module.name"}`` of its module's ``from module import name`` lines


class DeclaredRegistry:
    """The members of the :class:`Registry` named ``variable`` in ``package``, read from the package's source
    without importing its modules (nor torch): the classes decorated ``@variable.register(...)``, in the order the
    registry would register them, with their aliases, base classes and constructor parameters.

    The command line checks names and parameters with it before anything heavy loads; the registry itself stays
    the authority. ``complete`` is False where a registration cannot be read this way (a call to ``register``
    that is not a class decorator with literal arguments, a name that is not a string literal): then a name this
    class does not know may still exist, and callers must leave the decision to the registry.
    """

    def __init__(self, kind: str, package: str, variable: str, name_attribute: str = "name") -> None:
        self.kind = kind
        self.package = package
        self.variable = variable
        self.name_attribute = name_attribute
        self._members: list[Declared] | None = None
        self._complete = True

    @property
    def members(self) -> list[Declared]:
        if self._members is None:
            self._members = _Scan(self).members()
        return self._members

    @property
    def complete(self) -> bool:
        return bool(self.members) and self._complete

    def names(self) -> list[str]:
        return [member.name for member in self.members]

    def aliases(self) -> dict[str, str]:
        return {alias: member.name for member in self.members for alias in member.aliases}

    def resolve(self, name: str) -> str:
        """As :meth:`Registry.resolve` (the same one-line error); only meaningful where :attr:`complete`."""
        return _resolve(self.kind, name, self.names(), self.aliases())

    def get(self, name: str) -> Declared:
        resolved = self.resolve(name)
        return next(member for member in self.members if member.name == resolved)


class _Scan:
    """One reading of a package's source for :class:`DeclaredRegistry`: modules in the order the registry's
    discovery imports them (each module's imports of the package's modules first, as Python runs them)."""

    def __init__(self, registry: DeclaredRegistry) -> None:
        self.registry = registry
        spec = importlib.util.find_spec(registry.package)  # imports the parent packages only
        locations = spec.submodule_search_locations if spec is not None else None
        self.roots = [Path(location) for location in locations or []]
        self.trees: dict[str, ast.Module | None] = {}
        self.visited: set[str] = set()
        self.found: list[Declared] = []

    def members(self) -> list[Declared]:
        if not self.roots:
            self.registry._complete = False
            return []
        self.visit(self.registry.package)
        for module in pkgutil.iter_modules([str(root) for root in self.roots]):
            if not module.name.startswith("_"):
                self.visit(f"{self.registry.package}.{module.name}")
        return self.found

    def tree(self, module: str) -> ast.Module | None:
        if module not in self.trees:
            self.trees[module] = None
            parts = self.parts(module)
            for root in self.roots:
                base = root.joinpath(*parts)
                for path in (base / "__init__.py", base.with_suffix(".py") if parts else None):
                    if path is not None and path.is_file():
                        self.trees[module] = ast.parse(path.read_text(encoding="utf-8"), str(path))
                        break
                if self.trees[module] is not None:
                    break
        return self.trees[module]

    def inside(self, module: str) -> bool:
        return module == self.registry.package or module.startswith(self.registry.package + ".")

    def imported_module(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = module if self.is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def parts(self, module: str) -> list[str]:
        """``module``'s path inside the package: ``[]`` for the package, ``["sub", "name"]``..."""
        return (
            module.removeprefix(self.registry.package).lstrip(".").split(".") if module != self.registry.package else []
        )

    def is_package(self, module: str) -> bool:
        return any((root.joinpath(*self.parts(module)) / "__init__.py").is_file() for root in self.roots)

    def visit(self, module: str) -> None:
        """Run ``module`` as Python would, as far as registrations go: its parent package, then its statements."""
        if module in self.visited or not self.inside(module):
            return
        self.visited.add(module)
        if module != self.registry.package:
            self.visit(module.rpartition(".")[0])
        tree = self.tree(module)
        if tree is None:
            return
        decorators = 0
        for statement in tree.body:
            if isinstance(statement, ast.Import):
                for alias in statement.names:
                    self.visit(alias.name)
            elif isinstance(statement, ast.ImportFrom):
                source = self.imported_module(module, statement)
                self.visit(source)
                for alias in statement.names:  # ``from package import submodule``
                    if self.tree(f"{source}.{alias.name}") is not None:
                        self.visit(f"{source}.{alias.name}")
            elif isinstance(statement, ast.ClassDef):
                decorators += self.register(module, tree, statement)
        calls = sum(
            isinstance(node, ast.Attribute) and node.attr == "register" and isinstance(node.value, ast.Name)
            and node.value.id == self.registry.variable
            for node in ast.walk(tree)
        )  # fmt: skip
        if calls != decorators:  # register() called some other way: not readable from the source
            self.registry._complete = False

    def register(self, module: str, tree: ast.Module, node: ast.ClassDef) -> int:
        """Record the registrations of class ``node``; the number of its ``register`` decorators."""
        count = 0
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            function = call.func if call is not None else decorator
            if not (
                isinstance(function, ast.Attribute) and function.attr == "register"
                and isinstance(function.value, ast.Name) and function.value.id == self.registry.variable
            ):  # fmt: skip
                continue
            count += 1
            try:
                if call is None:
                    raise ValueError("register used without parentheses")
                given = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
                name = ast.literal_eval(call.args[0]) if call.args else given.get("name")
                aliases = tuple(given.get("aliases", ()))
            except (ValueError, TypeError, SyntaxError):
                self.registry._complete = False
                continue
            chain = self.ancestry(module, node)
            name = name or self.attribute(chain, self.registry.name_attribute) or node.name
            if not isinstance(name, str) or not all(isinstance(alias, str) for alias in aliases):
                self.registry._complete = False
                continue
            parameters, any_keyword = self.parameters(chain)
            ancestors = tuple(dict.fromkeys(base for _, cls in chain for base in _base_names(cls)))
            imports = {
                alias.asname or alias.name: f"{self.imported_module(module, statement)}.{alias.name}"
                for statement in tree.body if isinstance(statement, ast.ImportFrom)
                for alias in statement.names
            }  # fmt: skip
            self.found.append(Declared(name, aliases, module, node.name, ancestors, parameters, any_keyword, imports))
        return count

    def lookup(self, module: str, name: str) -> tuple[str, ast.ClassDef] | None:
        """The class ``name`` (``Name`` or ``module.Name``) means in ``module``, if the package defines it."""
        tree = self.tree(module)
        if tree is None:
            return None
        head, _, rest = name.partition(".")
        for statement in tree.body:
            if isinstance(statement, ast.ClassDef) and statement.name == name:
                return module, statement
            if isinstance(statement, ast.ImportFrom):
                source = self.imported_module(module, statement)
                for alias in statement.names:
                    if (alias.asname or alias.name) == head and self.inside(source):
                        if rest:  # ``from package import module`` then ``module.Class``
                            return self.lookup(f"{source}.{alias.name}", rest)
                        return self.lookup(source, alias.name)
        return None

    def ancestry(self, module: str, node: ast.ClassDef) -> list[tuple[str, ast.ClassDef]]:
        """``node`` and its base classes defined in the package, depth first (the method resolution order of single
        inheritance)."""
        chain = [(module, node)]
        for base in _base_names(node):
            found = self.lookup(module, base)
            if found is not None and found not in chain:
                chain.extend(item for item in self.ancestry(*found) if item not in chain)
        return chain

    @staticmethod
    def attribute(chain: list[tuple[str, ast.ClassDef]], attribute: str) -> Any:
        """The value the first class of ``chain`` that assigns ``attribute`` gives it (``...`` if not a literal)."""
        for _, cls in chain:
            for statement in cls.body:
                if isinstance(statement, ast.Assign):
                    targets, value = statement.targets, statement.value
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    targets, value = [statement.target], statement.value
                else:
                    continue
                if any(isinstance(target, ast.Name) and target.id == attribute for target in targets):
                    try:
                        return ast.literal_eval(value)
                    except ValueError:
                        return ...  # not a literal: not a str, so the registration counts as unreadable
        return None

    @staticmethod
    def parameters(chain: list[tuple[str, ast.ClassDef]]) -> tuple[dict[str, DeclaredParameter] | None, bool]:
        for _, cls in chain:
            for statement in cls.body:
                if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
                    arguments = statement.args
                    positional = [*arguments.posonlyargs, *arguments.args][1:]  # without self
                    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
                    pairs = [*zip(positional, defaults), *zip(arguments.kwonlyargs, arguments.kw_defaults)]
                    found = {
                        argument.arg: DeclaredParameter(
                            ast.unparse(argument.annotation) if argument.annotation is not None else None,
                            ast.unparse(default) if default is not None else None,
                        )
                        for argument, default in pairs
                    }
                    return found, arguments.kwarg is not None
        return None, True


def _base_names(node: ast.ClassDef) -> list[str]:
    return [ast.unparse(base.value if isinstance(base, ast.Subscript) else base) for base in node.bases]
