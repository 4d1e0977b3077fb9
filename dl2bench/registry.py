"""One registry per kind: name -> function, with helpful errors on unknown names."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

F = TypeVar("F", bound=Callable)


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class Registry:
    """Maps names to functions; registering twice under one name is a bug, so it raises."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}
        self._meta: Dict[str, Dict[str, Any]] = {}

    def register(self, fn: Optional[F] = None, *, name: Optional[str] = None, **meta: Any):
        """Decorator: `@REG.register` or `@REG.register(name="x", family="...")`; the default name
        is the function's; keyword facts (e.g. which family a model belongs to) go to `meta`."""

        def add(f: F) -> F:
            key = name or f.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = f
            self._meta[key] = dict(meta)
            return f

        return add(fn) if fn is not None else add

    def __getitem__(self, key: str) -> Callable:
        try:
            return self._entries[key]
        except KeyError:
            hint = difflib.get_close_matches(str(key), self._entries, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UnknownNameError(
                f"unknown {self.kind} {key!r}{maybe}; known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str = "*") -> List[str]:
        """Registered names matching a shell-style pattern, in registration order."""
        return [n for n in self._entries if fnmatch.fnmatch(n, pattern)]

    def meta(self, key: str) -> Dict[str, Any]:
        """The keyword facts given at registration (empty if none)."""
        self[key]  # unknown names raise the helpful error
        return self._meta[key]

    def doc(self, key: str) -> str:
        """First line of an entry's docstring (for `python -m dl2bench list`)."""
        return ((self[key].__doc__ or "").strip().splitlines() or [""])[0]
