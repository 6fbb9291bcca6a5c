"""What the fuzz tests (tests/unit/test_fuzz_*.py) share: their settings and hostile inputs.

Every boundary a person or a program reaches gets inputs that mix the valid shapes with what
an operator, a webhook or a script could send instead: wrong types, None, huge and unicode
strings, control characters, a valid value with a trailing newline, path traversal, nested junk.

Runs are reproducible (derandomized, no example database). `FUZZ_SCALE=20` runs twenty times
as many examples; `FUZZ_RANDOM=1` draws new ones each run instead of the fixed sequence.
"""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        derandomize=os.environ.get("FUZZ_RANDOM") != "1",
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
    )


# Strings that have broken parsers and pattern checks before.
NASTY_TEXT = [
    "", " ", "\n", "\r\n", "\t", "\x00", "\x7f", "\u2028", "\u202e", "\ufeff", "é", "日本", "🙂",
    "../../etc/passwd", "..", ".", "/", "//", "~", "*", "-", "--help", "$(id)", "`id`", "{{ 7 * 7 }}",
    "%00", "a b", "null", "None", "true", "0", "-1", "1e400", "NaN", "@", "a" * 300, "x" * 70_000,
]

nasty_text = st.sampled_from(NASTY_TEXT)
scalar_junk = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), nasty_text,
)
# Nested JSON-like junk (what a JSON body or a YAML file can hold).
junk = st.recursive(
    scalar_junk,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def spoiled(valid: str) -> list[str]:
    """A valid value made invalid the ways a hand or a script does it."""
    return [valid + "\n", valid + "\r\n", " " + valid, valid + " ", valid.upper(), valid + "\x00",
            valid * 40, "../" + valid, valid + "/..", valid + "\u2028"]


def hostile(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly valid values, then valid values spoiled, then anything at all."""
    spoil = valid.flatmap(lambda v: st.sampled_from(spoiled(v)) if isinstance(v, str) else st.just(v))
    return st.one_of(valid, valid, spoil, junk)


def field_of(message: str) -> str:
    """The field an error names first: `field: ...` or `field[3] ...`."""
    return re.split(r"[:\[ ]", message, maxsplit=1)[0]


def mostly_valid(data, valid: dict[str, st.SearchStrategy], spoil: dict[str, st.SearchStrategy]) -> dict:
    """Valid values for every field, then, half the time, one field spoiled: so the valid side of a
    boundary is reached as often as each of its refusals."""
    values = {name: data.draw(strategy, label=name) for name, strategy in valid.items()}
    if data.draw(st.booleans(), label="spoil one field"):
        name = data.draw(st.sampled_from(sorted(spoil)), label="spoiled field")
        values[name] = data.draw(spoil[name], label=f"spoiled {name}")
    return values
