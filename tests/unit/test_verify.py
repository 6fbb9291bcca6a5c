"""The verify step's runner on a real little service: tests, coverage, flake8, pylint."""

from __future__ import annotations

import json
import textwrap

import pytest

from release.tools import verify

COMMIT = "a" * 40


def service(tmp_path, code: str, test: str):
    d = tmp_path / "services" / "svc"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text('"""A service."""\n')
    (d / "calc.py").write_text(textwrap.dedent(code))
    (d / "test_calc.py").write_text(textwrap.dedent(test))
    return tmp_path


GOOD = '''\
"""Arithmetic."""


def add(left, right):
    """Add two numbers."""
    return left + right
'''
GOOD_TEST = '''\
"""Tests."""
from services.svc.calc import add


def test_add():
    """It adds."""
    assert add(1, 2) == 3
'''


def run(tmp_path, capsys, **kw) -> tuple[int, dict]:
    args = ["--repo", "file:///unused", "--commit", COMMIT, "--path", "services/svc", "--workdir", str(tmp_path)]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    code = verify.main(args)
    out = capsys.readouterr().out
    return code, json.loads(out[out.index('{\n  "passed"'):])


def test_clean_service_passes(tmp_path, capsys):
    code, summary = run(service(tmp_path, GOOD, GOOD_TEST), capsys)
    assert code == 0 and summary["passed"] is True
    assert [c["name"] for c in summary["checks"]] == ["tests", "coverage", "flake8", "pylint"]


def test_failing_test_fails(tmp_path, capsys):
    code, summary = run(service(tmp_path, GOOD, GOOD_TEST.replace("== 3", "== 4")), capsys)
    assert code == 1 and {c["name"]: c["passed"] for c in summary["checks"]}["tests"] is False


def test_low_coverage_and_lint_fail(tmp_path, capsys):
    code_ = GOOD + "\n\ndef unused(a,b):\n    x=1\n    return a\n"
    code, summary = run(service(tmp_path, code_, GOOD_TEST), capsys, coverage_min=95)
    checks = {c["name"]: c for c in summary["checks"]}
    assert code == 1
    assert checks["coverage"]["passed"] is False and "minimum 95" in checks["coverage"]["detail"]
    assert checks["flake8"]["passed"] is False


@pytest.mark.parametrize("args", [["--commit", "main"], ["--path", "../etc"]])
def test_refuses_bad_arguments(tmp_path, args):
    base = {"--repo": "file:///x", "--commit": COMMIT, "--path": "services/svc"}
    base.update(dict(zip(args[::2], args[1::2])))
    assert verify.main([a for kv in base.items() for a in kv]) == 2
