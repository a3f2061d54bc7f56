"""Config errors that speak the user's language (docs/design.md "House style" 8): every pydantic validation error
becomes one "path: message" line, the path written as in the YAML (`models[0].dtype`), and an unknown key
lists the keys its section allows with the closest one ("did you mean 'k'?")."""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel, ValidationError

from goldenlayers.registry import did_you_mean


class ConfigError(ValueError):
    """An invalid config; `problems` holds one "path: message" line per error."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"{source} is not a valid experiment config:\n" + "\n".join(f"  - {p}" for p in problems))


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by walking `loc` (field names, list indices, and the keys of a section whose
    model has `entry_model(key)`) from `root`."""
    cls: typing.Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        entry_model = getattr(cls, "entry_model", None)
        if entry_model is not None:  # a section keyed by registered names (selectors): the entry's own model
            cls = entry_model(part)
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        ann, cls = cls.model_fields[part].annotation, None
        todo = [ann]
        while todo:  # unwrap Optional[...] / list[...] / unions down to a model class
            a = todo.pop()
            if isinstance(a, type) and issubclass(a, BaseModel):
                cls = a
            elif isinstance(a, types.UnionType) or typing.get_origin(a) in (typing.Union, list):
                todo += list(typing.get_args(a))
    return cls


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def problems(err: ValidationError, root: type[BaseModel]) -> list[str]:
    """One "path: message" line per error of `err` (raised validating `root`); unknown keys list the allowed
    keys of their section and the closest one."""
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if isinstance(p, int) or not p.startswith(("list[", "literal[")))
        if e["type"] == "extra_forbidden":
            owner = _model_at(root, loc[:-1])
            allowed = list(owner.model_fields) if owner else []
            near = did_you_mean(str(loc[-1]), allowed)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            out.append(f"{_path(loc)}: unknown key; allowed: {', '.join(allowed)}{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{_path(loc)}: {msg}" if loc else msg)
    return list(dict.fromkeys(out))
