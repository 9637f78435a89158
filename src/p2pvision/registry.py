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
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Iterator
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
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {name!r}; choose one of {self._listing()}")
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        close = difflib.get_close_matches(name, [*self._entries, *self._aliases], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown {self.kind} '{name}'{hint}; choose one of {self._listing()}")

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

    def _listing(self) -> str:
        aliases: dict[str, list[str]] = {}
        for alias, name in self._aliases.items():
            aliases.setdefault(name, []).append(alias)
        return ", ".join(name + (f" ({', '.join(aliases[name])})" if name in aliases else "") for name in self._entries)


def _qualname(entry: Any) -> str:
    return f"{getattr(entry, '__module__', '')}.{getattr(entry, '__qualname__', repr(entry))}"
