"""Rendering the small TOML configs the tests write."""

from __future__ import annotations

import json
from typing import Any


def toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def render_toml(doc: dict[str, dict[str, Any]]) -> str:
    out = []
    for section, table in doc.items():
        if section == "receivers":
            for name, r in table.items():
                out.append(f"[receivers.{name}]")
                out += [f"{k} = {toml_value(v)}" for k, v in r.items()]
        else:
            out.append(f"[{section}]")
            out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"
