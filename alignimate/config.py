"""TOML presets (``--config FILE``) and how they merge with command-line flags.

A config file has one table per command (``[register]``, ``[faces]``, ``[animate]``). Every key it may
hold is a field of that command's settings class (:mod:`alignimate.settings`), with its type,
default, meaning and valid values; :data:`SCHEMA` is those declarations by section.
docs/configuration.md is the human-readable copy of that table and a test keeps the two in step.
Precedence, highest first: command-line flag, config file, built-in default.

The same declaration checks every value, wherever it comes from: a config file (the message names
the file and the key), a flag (it names the flag, e.g. ``--fps``) and the Python API (it names the
argument), all before any work starts. A config file is untrusted input: it is read as UTF-8 TOML
of at most 1 MiB, and any problem is a :class:`ConfigError` (exit status 2), never a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from alignimate import settings as typed
from alignimate.errors import UsageError

S = TypeVar("S", bound=typed.Settings)

__all__ = [
    "SCHEMA",
    "ConfigError",
    "Option",
    "check_values",
    "flag_name",
    "load_config",
    "resolve",
    "resolve_settings",
]

_MAX_CONFIG_BYTES = 1 << 20


class ConfigError(UsageError):
    """A config file or option value that cannot be used; the message names the file, flag or key
    and the reason."""


# One declaration per key: the settings classes (alignimate.settings); this is their table by section.
Option = typed.SettingInfo
SCHEMA: dict[str, dict[str, Option]] = {
    cls.section: typed.setting_infos(cls)
    for cls in (
        typed.RegisterSettings,
        typed.FacesSettings,
        typed.AnimateSettings,
        typed.ApplySettings,
        typed.DatasetFacesSettings,
    )
}


def flag_name(key: str) -> str:
    """The command-line flag of a config key: ``hold_last`` -> ``--hold-last``."""
    return "--" + key.replace("_", "-")


def check_values(section: str, values: Mapping[str, Any], *, style: str = "argument") -> None:
    """Check every value of ``section`` present in ``values`` against the schema.

    Args:
        section: the config section (a settings class's ``section``: ``register``, ``animate``, ...).
        values: key -> value; keys the section does not have are not looked at here.
        style: how the error names a bad key: ``"argument"`` (``fps``) or ``"flag"`` (``--fps``).

    Raises:
        ConfigError: naming the first bad value.
    """
    for key, option in SCHEMA[section].items():
        if key in values and values[key] is not None:
            problem = option.problem(values[key])
            if problem is not None:
                name = flag_name(key) if style == "flag" else key
                raise ConfigError(f"{name} {problem}")


def load_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a TOML preset; returns ``{section: {key: value}}`` with only the keys it sets.

    Raises :class:`ConfigError` naming the file and the problem (missing or unreadable file, not
    UTF-8, TOML syntax, unknown section or key, wrong type or value out of range)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_CONFIG_BYTES + 1)
        if len(raw) > _MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {_MAX_CONFIG_BYTES >> 20} MiB; not a config file")
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8)") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise ConfigError(f"{path}: not a usable config file ({err})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None

    config: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(sorted(SCHEMA))}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        options = SCHEMA[section]
        for key, value in values.items():
            if key not in options:
                known = ", ".join(sorted(options))
                raise ConfigError(f"{path}: unknown key '{key}' in [{section}]; known: {known}")
            problem = options[key].problem(value)
            if problem is not None:
                raise ConfigError(f"{path}: [{section}] {key} {problem}")
        config[section] = dict(values)
    return config


def resolve(
    section: str,
    flags: Mapping[str, Any],
    config: Mapping[str, Mapping[str, Any]] | None,
    base: typed.Settings | None = None,
) -> dict[str, Any]:
    """Merge one section: a flag that is not ``None`` wins, then the config file, then ``base``.

    Args:
        section: the section to merge (``register``, ``animate``, ...).
        flags: key -> flag value, None where the flag was not given; checked against the schema
            here (a :class:`ConfigError` names the flag).
        config: the loaded file (:func:`load_config`, values already checked), or None.
        base: where neither sets a key, its value comes from here (default: the built-in default).

    Returns:
        every key of the section with its value.
    """
    options = SCHEMA[section]
    check_values(section, {k: v for k, v in flags.items() if k in options}, style="flag")
    from_file = (config or {}).get(section, {})
    merged: dict[str, Any] = {}
    for key, option in options.items():
        flag = flags.get(key)
        if flag is not None:
            merged[key] = flag
        elif key in from_file:
            merged[key] = from_file[key]
        else:
            merged[key] = option.default if base is None else getattr(base, key)
    return merged


def resolve_settings(
    cls: type[S],
    flags: Mapping[str, Any],
    config: Mapping[str, Mapping[str, Any]] | None,
    base: S | None = None,
) -> S:
    """The settings object of one command: :func:`resolve` of ``cls``'s section, typed.

    Args:
        cls: the command's settings class (:mod:`alignimate.settings`).
        flags, config, base: as :func:`resolve`.
    """
    return cls(**resolve(cls.section, flags, config, base))
