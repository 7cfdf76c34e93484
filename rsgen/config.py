"""Configs: the YAML files of training runs and the dataclasses of components.

* YAML: named built-ins under ``rsgen/configs``, ``inherit:`` chains and ``key=value``
  overrides. Ablations are small YAML files that inherit a base config and flip switches; the
  command line can flip the same switches with ``--set model.attention=none``.
* :class:`ComponentConfig`: the base of every component's config dataclass (networks,
  noise schedulers), stored as JSON in a model folder's ``config.json``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml

from rsgen.errors import RsgenError

CONFIG_DIR = Path(__file__).parent / "configs"


def _config_families() -> list[Path]:
    """One folder per kind of model (``sr``, ``clip``, ``scene``); names are unique across them."""
    return sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir())


def builtin_config_names() -> list[str]:
    """Names of the built-in configs, e.g. ``degan-cpu``, ``rs-clip`` or ``ablations/degan-cpu-baseline``."""
    return sorted(
        str(p.relative_to(family).with_suffix("")).replace("_", "-")
        for family in _config_families()
        for p in family.rglob("*.yaml")
    )


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or a built-in config by name (``degan-paper``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise RsgenError("config file not found", path)
        return path
    for family in _config_families():
        candidate = family / (str(name_or_path).replace("-", "_") + ".yaml")
        if candidate.is_file():
            return candidate
    raise RsgenError(f"unknown config; built-in configs: {', '.join(builtin_config_names())}", name_or_path)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RsgenError(f"invalid YAML: {str(exc).splitlines()[0]}", path) from exc
    if not isinstance(data, dict):
        raise RsgenError("config must be a YAML mapping", path)
    return data


def load_config_file(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML file, following ``inherit:`` (relative to the file) recursively."""
    path = path.resolve()
    if path in _seen:
        raise RsgenError("config inherits itself", path)
    data = _read_yaml(path)
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    parent_path = (
        (path.parent / parent) if str(parent).endswith((".yaml", ".yml")) else resolve_config_path(parent)
    )
    return deep_merge(load_config_file(parent_path, (*_seen, path)), data)


def parse_value(raw: str) -> Any:
    """YAML value of an override; also reads ``1e-3`` as a float (YAML 1.1 would keep a string)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=yaml_value`` overrides (``model.attention=none``, ``train.lr=1e-4``)."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RsgenError(f"override {item!r} must look like section.key=value")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RsgenError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = parse_value(raw)
    return config


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Load a built-in or user config, with inheritance and overrides applied."""
    config = load_config_file(resolve_config_path(name_or_path))
    return apply_overrides(config, overrides or [])


class ComponentConfig:
    """Mixin for a component's config dataclass: strict :meth:`from_dict` and :meth:`to_dict`.

    ``NAME`` is the registry key stored as ``name`` (e.g. ``degan_generator``), so a saved
    folder says which class rebuilds it without unpickling anything.
    """

    NAME: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a plain dict, rejecting unknown keys (typos in YAML fail loudly)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"name"})
        if unknown:
            raise ValueError(f"unknown {cls.NAME} option(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.NAME, **asdict(self)}
