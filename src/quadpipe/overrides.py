"""Command-line config overrides (`snakemake --config`) typed by the workflow's schema, and the
schema's verdict on a config as one line naming the key.

Snakemake reads a nested `--config eval='{"speed": 0.2}'` with YAML's BaseLoader, which keeps
every scalar inside it a string ({"speed": "0.2"}; lists too: ["64", "64"]), so each numeric
override of a nested key would fail the schema. `apply_overrides` converts those strings to what
workflow/schemas/config.schema.yaml says the key holds (number, integer, boolean, null, arrays
of them, nested objects), the way config.yaml would have read them. A string that does not
convert stays a string, and `check` then names its key: "eval.speed: 'fast' is not of type
'number'". Light on purpose (yaml and jsonschema only): the Snakefile imports it at parse time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from quadpipe.config import shares_fit
from quadpipe.errors import ConfigError

# What PyYAML (and so config.yaml) reads as booleans and null.
TRUE = {"true", "yes", "on"}
FALSE = {"false", "no", "off"}
NULL = {"null", "Null", "NULL", "~"}


def load_schema(path: str | Path) -> dict[str, Any]:
    """The workflow's JSON schema (YAML), as a dict."""
    with open(path) as f:
        return yaml.safe_load(f)


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any],
                    schema: Mapping[str, Any]) -> None:
    """Merge the typed `overrides` (Snakemake's parsed --config) into `config`, in place.

    `config` already holds the overrides as strings (Snakemake merged them); merging their typed
    values the same way (dicts key by key, anything else replaced) puts each one back where it
    was, now a number, a boolean or a list of them. Values from config files are not touched.
    """
    _merge(config, coerce(dict(overrides), schema))


def coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """`value` with each string converted to the type its place in `schema` holds.

    A place without a type (the entries of eval.paths: {name, shape, radius, ...}) reads a
    numeric string as a number, as YAML would. Non-strings and strings that do not convert are
    returned unchanged: the schema, not this function, refuses them.
    """
    if isinstance(value, Mapping):
        props = schema.get("properties")
        if props is None:  # an object the schema does not describe: no types to follow
            return {k: coerce(v, {}) for k, v in value.items()}
        return {k: coerce(v, props[k]) if k in props else v for k, v in value.items()}
    if isinstance(value, list):
        return [coerce(v, schema.get("items", {})) for v in value]
    if isinstance(value, str):
        return _scalar(value, schema)
    return value


def check(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Raise ConfigError with the schema's first complaint about `config`, naming its key.

    Snakemake's own `validate` prints the failing schema and instance over a dozen lines; this
    says "eval.speed: 'fast' is not of type 'number'" and nothing else.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where = key_path(error.absolute_path)
        raise ConfigError(f"{where}: {error.message}" if where else error.message)


def check_relations(config: Mapping[str, Any]) -> None:
    """Refuse values that are valid alone but not together, which a JSON schema cannot say,
    at parse time rather than in the job that reads them, hours of training later."""
    f = config.get("finetune") or {}
    kicked, share = float(f.get("kicked", 0.0)), float(f.get("randomize", 0.0))
    if not shares_fit(kicked, share):
        raise ConfigError(f"finetune.kicked ({kicked:g}) + finetune.randomize ({share:g}) is "
                          f"over 1: kicked and randomised episodes are different ones; lower "
                          f"one of them")


def key_path(parts: Any) -> str:
    """A key's dotted name: ["suite", "speed", 0] -> "suite.speed[0]"."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out


def _scalar(text: str, schema: Mapping[str, Any]) -> Any:
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if not types:
        number = _number(text)
        return text if number is None else number
    if "null" in types and text.strip() in NULL:
        return None
    if "string" in types:
        return text
    for t in types:
        if t == "boolean" and text.strip().lower() in TRUE | FALSE:
            return text.strip().lower() in TRUE
        if t == "integer":
            number = _number(text)
            if number is not None and float(number).is_integer():
                return int(number)
        if t == "number":
            number = _number(text)
            if number is not None:
                return float(number)
    return text


def _number(text: str) -> int | float | None:
    """`text` as an int or a finite float; None when it is neither."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _merge(config: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(config.get(key), dict):
            _merge(config[key], value)
        else:
            config[key] = value
