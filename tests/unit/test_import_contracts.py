"""The `forbidden_names` import-linter contract (tests/import_contracts.py) catches what it should."""

from __future__ import annotations

import textwrap

import grimp
import pytest

from tests.import_contracts import ForbiddenNamesContract, imported_names, matches

FORBIDDEN = ["airflow.providers.*.operators", "airflow.sdk.BaseSensorOperator"]


def test_a_pattern_covers_the_names_inside_it():
    assert matches("airflow.providers.standard.operators.python.PythonOperator", "airflow.providers.*.operators")
    assert matches("airflow.sdk.BaseSensorOperator", "airflow.sdk.BaseSensorOperator")
    assert not matches("airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook", "airflow.providers.*.operators")
    assert not matches("airflow.sdk.BaseSensorOperatorX", "airflow.sdk.BaseSensorOperator")
    assert not matches("airflow.providers", "airflow.providers.*.operators")


def test_an_import_is_read_from_the_line_when_there_is_no_source():
    assert imported_names("nowhere.x", 1, "from airflow.sdk import Param, BaseSensorOperator as S") == [
        "airflow.sdk.Param", "airflow.sdk.BaseSensorOperator"]
    # An alias names nothing imported: `Param as BaseSensorOperator` brings in Param only.
    assert imported_names("nowhere.x", 1, "from airflow.sdk import Param as BaseSensorOperator") == ["airflow.sdk.Param"]
    assert imported_names("nowhere.x", 1, "import airflow.operators.python") == ["airflow.operators.python"]


@pytest.fixture
def package(tmp_path, monkeypatch):
    name = "contractprobe"
    root = tmp_path / name
    (root / "flows").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "flows/__init__.py": "",
        "flows/dag.py": "from airflow.providers.standard.operators.python import PythonOperator\n",
        "steps.py": """
            def build():
                from airflow.sdk import (
                    Param,
                    BaseSensorOperator,
                )
                return Param, BaseSensorOperator
        """,
        "hooks.py": "from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook\n",
        "web.py": "import airflow.providers.standard.operators.empty\n",
    }
    for path, text in files.items():
        (root / path).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_only_the_allowed_importers_may_import_the_names(package):
    graph = grimp.build_graph(package, include_external_packages=True, cache_dir=None)
    contract = ForbiddenNamesContract("probe", {"root_packages": [package]}, {
        "source_modules": [package], "forbidden_names": FORBIDDEN, "allowed_importers": [f"{package}.flows"]})
    check = contract.check(graph, verbose=False)
    assert not check.kept
    found = {(v["importer"], v["name"], v["line_number"]) for v in check.metadata["violations"]}
    assert found == {
        (f"{package}.steps", "airflow.sdk.BaseSensorOperator", 3),  # inside a function, over several lines
        (f"{package}.web", "airflow.providers.standard.operators.empty", 1),
    }
    allowed = ForbiddenNamesContract("probe", {"root_packages": [package]}, {
        "source_modules": [package], "forbidden_names": FORBIDDEN,
        "allowed_importers": [f"{package}.flows", f"{package}.steps", f"{package}.web"]})
    assert allowed.check(graph, verbose=False).kept


def test_a_contract_that_would_check_nothing_is_an_error(package):
    graph = grimp.build_graph(package, include_external_packages=False, cache_dir=None)
    contract = ForbiddenNamesContract("probe", {"root_packages": [package]}, {
        "source_modules": [package], "forbidden_names": FORBIDDEN})
    with pytest.raises(ValueError, match="airflow is not in the import graph"):
        contract.check(graph, verbose=False)
