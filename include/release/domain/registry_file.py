"""Reading the registry's files strictly: a hand edit that broke them is named by file and line.

`registry/versions.yaml` and `registry/history.yaml` are written only by the platform. When a
person edits one by hand and breaks it (YAML that does not parse, a key given twice, a value of
the wrong type such as `version: [1]` or an environment that is a list), the platform must not
guess what was meant, and must not write over it: every reader and writer stops with a
`RegistryFileError` that says which file, which line and what is wrong.

The files are large (100,000 history entries are tens of MB), so the common case is read fast:
libyaml's parser, the document built in one pass, one pydantic validation of the whole of it.
Whatever that pass does not vouch for (a key given twice, a merge key, a tag or value it does not
build, a value the schema refuses) is read again by the strict, line-tracking loader, which names
the file, the line and the problem, exactly as it always did, or reads the file when it is fine.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator

from release.domain.values import IMAGE_RE, VERSION_RE, Strict

_MAX_ERRORS = 5
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where installed: faster


class StrictLoader(SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the base class says so, with its line
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice (first at line {first.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


class _Unusual(Exception):
    """Something the fast read does not decide; the strict loader reads the file again."""


_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
# Scalars built by PyYAML's safe constructors, as the strict loader builds them; any other tag
# (a merge key, !!binary, !!set, a local tag) is left to the strict loader.
_SCALARS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "timestamp"))


def _fast_data(text: str) -> Any:
    """The document as the strict loader would build it, if it is an ordinary one; else _Unusual
    (or whatever PyYAML raised): the caller then reads it strictly."""
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        constructors = loader.yaml_constructors
        built: dict[int, Any] = {}  # an alias is the node it names: built once, not once per use

        def build(node: yaml.Node) -> Any:
            if isinstance(node, yaml.ScalarNode):
                if node.tag == _STR:
                    return node.value
                if node.tag not in _SCALARS:
                    raise _Unusual(node.tag)
                return constructors[node.tag](loader, node)
            seen = built.get(id(node))
            if seen is not None:
                return seen
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
                value: Any = {build(k): build(v) for k, v in node.value}  # an unhashable key: TypeError
                if len(value) != len(node.value):
                    raise _Unusual("a key given twice")
            elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
                value = [build(v) for v in node.value]
            else:
                raise _Unusual(node.tag)
            built[id(node)] = value
            return value

        return build(node)
    finally:
        loader.dispose()


class _Strict(Strict):
    model_config = ConfigDict(strict=True)  # no coercion: a hand-written `version: 1.10` is a float, not "1.10"


def _iso_time(value: str) -> str:
    from datetime import datetime

    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO-8601 time such as 2026-11-26T10:00:00Z") from None
    return value


class _Deployment(_Strict):
    version: str = Field(pattern=VERSION_RE.pattern)
    image: str = Field(pattern=IMAGE_RE.pattern)
    deployed_at: str
    deployed_by: str
    run_id: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    _times = field_validator("deployed_at")(_iso_time)


class VersionsFile(_Strict):
    schema_version: Literal[1] = 1
    environments: dict[str, dict[str, _Deployment] | None] = Field(default_factory=dict)


class _Entry(_Strict):
    id: int
    env: str
    service: str
    version: str = Field(pattern=VERSION_RE.pattern)
    image: str = Field(pattern=IMAGE_RE.pattern)
    previous_version: str | None
    action: Literal["deploy", "rollback"]
    outcome: Literal["deployed", "rolled_back", "failed"]
    at: str
    by: str
    run_id: str
    reason: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)

    _times = field_validator("at")(_iso_time)


class HistoryFile(_Strict):
    schema_version: Literal[1] = 1
    entries: list[_Entry] = Field(default_factory=list)


class RegistryFileError(ValueError):
    """A registry file is broken; nothing is read from it or written to it until a commit fixes it."""

    def __init__(self, path: str, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}, line {line}" if line else path
        super().__init__(
            f"{where}: {problem}. The registry is written only by the platform and this file no longer "
            f"reads as one (a hand edit?); nothing was written. Fix or revert the edit by a commit to the "
            f"GitOps repository.")


@contextmanager
def gc_paused():
    """Python's cycle collector paused while a document is built: it would walk the millions of
    young objects a large file makes over and over (4x the parse), and a YAML tree has no cycles
    to collect. Process-wide and brief; resumed after, unless it was off already."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(path: str, text: str | None, schema: type[_Strict]) -> dict:
    """The file's data, checked against `schema`; RegistryFileError naming `path` and the line."""
    if not (text or "").strip():
        return {}
    with gc_paused():
        return _load(path, text, schema)


def _load(path: str, text: str, schema: type[_Strict]) -> dict:
    try:
        data = _fast_data(text)
        if data is None:
            return {}
        if isinstance(data, dict):
            schema.model_validate(data)
            return data
    except Exception:  # noqa: BLE001 - not vouched for: the strict read below says what and where
        pass
    return _load_strict(path, text, schema)


def _load_strict(path: str, text: str, schema: type[_Strict]) -> dict:
    """`load`, node by node: every key checked for a twin, every problem located by its line."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot be parsed"
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            problem += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        raise RegistryFileError(path, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow; it names its position
        raise RegistryFileError(path, None, f"not valid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML reads but cannot build, e.g. at: 2026-13-45
        raise RegistryFileError(path, None, f"not valid YAML: a value cannot be read ({exc})") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegistryFileError(path, node.start_mark.line + 1,
                                f"must be a mapping with {', '.join(schema.model_fields)}, not {_kind(data)}")
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [_describe(e) for e in errors[:_MAX_ERRORS]]
        more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
        first = _line(node, errors[0]["loc"])
        lines = [f"{text}" if i == 0 else f"line {_line(node, e['loc'])}: {text}"
                 for i, (e, text) in enumerate(zip(errors, problems))]
        raise RegistryFileError(path, first, "; ".join(lines) + more) from None
    return data


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", type(None): "empty"}.get(
        type(value), f"a {type(value).__name__}")


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "[key]") or "(top level)"


_EXPECTED = {"string_type": "a string", "int_type": "a whole number", "dict_type": "a mapping", "model_type": "a mapping",
             "list_type": "a list", "bool_type": "true or false"}


def _describe(error: dict) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    name = _field(loc)
    if kind == "missing":
        return f"{name}: missing"
    if kind == "extra_forbidden":
        return f"{name}: not a field the registry has"
    if "[key]" in loc:
        return f"{name}: the key {value!r} must be a string"
    if kind == "string_pattern_mismatch":
        return f"{name}: {str(value)[:80]!r} is not a {'digest-pinned image' if loc[-1] == 'image' else 'version'}"
    if kind in _EXPECTED:
        quote = "; put it in quotes" if kind == "string_type" and not isinstance(value, (dict, list)) else ""
        return f"{name}: must be {_EXPECTED[kind]}, not {_kind(value)} ({str(value)[:60]}){quote}"
    if kind == "literal_error":
        return f"{name}: {value!r:.60} is not allowed; {error['msg'].replace('Input should be', 'allowed:')}"
    return f"{name}: {error['msg'].removeprefix('Value error, ')}"


def _line(node: yaml.Node, loc: tuple) -> int:
    """The line (1-based) of the YAML node `loc` points at; for a mapping's value, the line of its key."""
    mark = node.start_mark
    for part in loc:
        if part == "[key]":
            break
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if pair is None:
                break
            mark, node = pair[0].start_mark, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark.line + 1
