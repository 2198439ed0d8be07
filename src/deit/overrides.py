"""Typed ``key=value`` settings for any config dataclass, and the error a bad one raises.

``--set key=value`` reaches every config type (a student's :class:`deit.config.TrainConfig`,
a teacher's recipe) through :func:`parse_overrides`: each value is read as its field's own
type, and an unknown key or a value of the wrong type is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any


class ConfigError(ValueError):
    """A configuration the run cannot start with; the message says why."""


def _coerce(name: str, kind: Any, text: str) -> Any:
    """Parse ``text`` as the type of field ``name`` (a comma list for tuples; "" is empty)."""
    kind = str(kind)
    if kind.startswith("tuple"):
        if not text.strip():
            return ()
        return tuple(_coerce(name, kind[6:].split(",")[0], v) for v in text.split(","))
    if "bool" in kind:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {text!r}")
    if text.lower() == "none" and "None" in kind:
        return None
    for caster in (int, float):
        if caster.__name__ in kind:
            try:
                return caster(text)
            except ValueError:
                raise ConfigError(f"{name}: expected {caster.__name__}, got {text!r}") from None
    return text


def parse_overrides(config_type: type, overrides: list[str]) -> dict[str, Any]:
    """``key=value`` strings as a dict of typed field values of the config dataclass type.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming them.
    """
    types = {f.name: f.type for f in fields(config_type)}
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key not in types:
            raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(types))}")
        changes[key] = _coerce(key, types[key], value)
    return changes
