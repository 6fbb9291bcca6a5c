"""Kubernetes label and field selectors, as the API server parses them."""

from __future__ import annotations

import re

_SET = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


class SelectorError(ValueError):
    pass


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside an `in (...)` set."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*parts, cur] if p.strip()]


def parse_labels(selector: str | None) -> list[tuple[str, str, frozenset]]:
    """Requirements as (key, op, values); op is one of in, notin, exists, !exists."""
    reqs = []
    for term in _split(selector or ""):
        if m := _EQ.fullmatch(term):
            key, op, value = m.groups()
            reqs.append((key, "notin" if op == "!=" else "in", frozenset([value])))
        elif m := _SET.fullmatch(term):
            neg, key, op, values = m.groups()
            if op:
                reqs.append((key, op, frozenset(v.strip() for v in values.split(","))))
            else:
                reqs.append((key, "!exists" if neg else "exists", frozenset()))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")
    return reqs


def labels_match(reqs: list[tuple[str, str, frozenset]], labels: dict | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        ok = {
            "in": key in labels and labels[key] in values,
            "notin": labels.get(key) not in values,  # a missing label is "not in", as upstream
            "exists": key in labels,
            "!exists": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def parse_fields(selector: str | None) -> list[tuple[str, bool, str]]:
    """Requirements as (dotted path, equal?, value)."""
    reqs = []
    for term in _split(selector or ""):
        m = _EQ.fullmatch(term)
        if not m:
            raise SelectorError(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        reqs.append((path, op != "!=", value))
    return reqs


def _field(obj: dict, path: str) -> str:
    node = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def fields_match(reqs: list[tuple[str, bool, str]], obj: dict) -> bool:
    return all((_field(obj, path) == value) == equal for path, equal, value in reqs)
