"""Read a YAML config, apply dotted command-line overrides, validate, save the resolved copy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from anybind.config.schema import SECTION_TYPES, Config
from anybind.errors import AnybindError, ConfigError


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    raw = read_yaml_mapping(path)
    config = config_from_dict(raw, overrides, file=str(path))
    resolve_data_paths(config, path.resolve().parent)
    return config


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError("config file not found", file=str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start + 1})", file=str(path)) from None
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping", file=str(path))
    return raw


def resolve_data_paths(config: Config, base: Path) -> None:
    """Relative paths of the data sources are relative to the config's own folder, so a run
    can be trained, evaluated and resumed from any directory; the run folder's saved config
    then holds them absolute. URLs and `pipe:` commands are left as they are."""

    def resolved(value: str | None) -> str | None:
        if value is None or value.startswith("pipe:") or "://" in value:
            return value
        return value if Path(value).is_absolute() else os.path.normpath(base / value)

    for source in [*config.data.train, *config.data.eval]:
        for field in ("path", "root", "index"):
            if isinstance(getattr(source, field, None), str):
                setattr(source, field, resolved(getattr(source, field)))


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | None = None, *, file: str | None = None
) -> Config:
    raw = apply_overrides(raw, overrides or [], file=file)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, file) from None
    except ConfigError as exc:  # e.g. an unknown encoder type found while validating
        raise ConfigError(exc.detail, key=exc.key, file=file) from None
    except AnybindError as exc:
        raise ConfigError(str(exc), file=file) from None


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], *, file: str | None = None
) -> dict[str, Any]:
    """`a.b.c=value` sets raw["a"]["b"]["c"] = yaml(value); lists are indexed by number."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.path=value", file=file)
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        "no such list index", key=".".join(parts[: depth + 1]), file=file
                    )
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ConfigError(
                    "cannot set a key inside a plain value",
                    key=".".join(parts[: depth + 1]),
                    file=file,
                )
        last = parts[-1]
        try:
            parsed = _parse_value(value)
        except yaml.YAMLError as exc:  # a tag such as !!python/… is refused by safe_load
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"not a plain YAML value ({problem})", key=key, file=file) from None
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError("no such list index", key=key, file=file)
            node[int(last)] = parsed
        else:
            node[last] = parsed
    return raw


def _parse_value(value: str) -> Any:
    """YAML scalars, except that 1e-3 is a number (YAML 1.1 reads it as a string)."""
    if not value.strip():
        return ""
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):
        try:
            return float(parsed)
        except ValueError:
            return parsed
    return parsed


def save_config(config: Config, path: str | Path) -> None:
    from anybind.checkpoint import atomic_write_text

    data = config.model_dump(mode="json")
    atomic_write_text(Path(path), yaml.safe_dump(data, sort_keys=False))


def _section_type(loc: list[str]) -> str | None:
    """The type pydantic inserted after `objective` or `data.train.N` / `data.eval.N`."""
    for i, part in enumerate(loc[:-1]):
        after_source = i >= 2 and loc[i - 1].isdigit() and loc[i - 2] in ("train", "eval")
        if part in SECTION_TYPES and (i >= 1 and loc[i - 1] == "objective" or after_source):
            return part
    return None


def _config_error(exc: ValidationError, file: str | None) -> ConfigError:
    lines = []
    first_key = None
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        # pydantic puts the tag of a typed section (objective, data source) into the path
        tag = _section_type(loc)
        key = ".".join(p for i, p in enumerate(loc) if not (tag and p == tag and i > 0))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"not an option of {SECTION_TYPES[tag]} type '{tag}'" if tag else "unknown key"
        head, sep, rest = msg.partition(": ")
        names_key = sep and head.replace(".", "").replace("_", "").isalnum()
        # a check on a section that names its key first ("steps: expected a number"), or a
        # cross-field check that names the whole dotted key ("objective.anchor: …")
        if names_key and (not key or "." not in head):
            key, msg = (f"{key}.{head}" if key and not head.startswith(key) else head), rest
        first_key = first_key or key or None
        lines.append(f"{key}: {msg}" if key else msg)
    return ConfigError("; ".join(lines), key=first_key, file=file)
