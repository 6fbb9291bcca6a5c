"""An import-linter contract for names inside an external package: `forbidden_names`.

import-linter sees an external package only as its top-level name (`airflow`), so its own
`forbidden` contract can forbid all of Airflow but not `airflow.providers.standard.operators`
alone. This contract looks at each import of the external package in the source modules, reads
which names it brings in (`from airflow.sdk import BaseSensorOperator` is
`airflow.sdk.BaseSensorOperator`), and refuses those under a forbidden name. Imports inside
functions count, as everywhere in import-linter; `if TYPE_CHECKING:` imports follow the
session's `exclude_type_checking_imports`.

Options (pyproject.toml, `[[tool.importlinter.contracts]]` with `type = "forbidden_names"`):
- `source_modules`: packages (with their submodules) that must not import the names;
- `forbidden_names`: dotted names in external packages; `*` stands for one part
  (`airflow.providers.*.operators` is every provider's operators);
- `allowed_importers`: modules or packages of the sources that may import them.

Registered with `contract_types = ["forbidden_names: tests.import_contracts.ForbiddenNamesContract"]`;
`lint-imports` runs from the repository root, which it puts on the import path.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def matches(name: str, pattern: str) -> bool:
    """`name` is `pattern` or inside it; `*` in the pattern stands for any one part."""
    parts, wanted = name.split("."), pattern.split(".")
    return len(parts) >= len(wanted) and all(w in ("*", p) for w, p in zip(wanted, parts))


def in_any(module: str, packages: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@lru_cache(maxsize=None)
def source_file(module: str) -> Path | None:
    """The file of an internal module, found from its root package without importing it."""
    root, *rest = module.split(".")
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports_by_line(path: Path) -> dict[int, list[str]]:
    """Line number -> the dotted names the import statement there brings in."""
    found: dict[int, list[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.setdefault(node.lineno, []).extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.setdefault(node.lineno, []).extend(alias.name for alias in node.names)
    return found


def imported_names(module: str, line_number: int, line_contents: str) -> list[str]:
    """What the import at `line_number` of `module` brings in: read from the source, so an
    import over several lines (`from airflow.sdk import (`) is read whole."""
    path = source_file(module)
    names = _imports_by_line(path).get(line_number) if path else None
    if names:
        return names
    # No source to read: the line as grimp recorded it ('from a.b import c, d as e' or 'import a.b').
    words = line_contents.replace(",", " ").replace("(", " ").replace(")", " ").split()
    # `x as y` brings in x, under another name: the word after `as` names nothing imported.
    aliases = {i + 1 for i, w in enumerate(words) if w == "as"}
    kept = [w for i, w in enumerate(words) if w != "as" and i not in aliases]
    if kept[:1] == ["from"] and "import" in kept:
        return [f"{kept[1]}.{w}" for w in kept[kept.index("import") + 1:]]
    return kept[1:]


class ForbiddenNamesContract(Contract):
    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    forbidden_names = fields.ListField(subfield=fields.StringField())
    allowed_importers = fields.ListField(subfield=fields.StringField(), required=False, default=[])

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        roots = sorted({name.split(".")[0] for name in self.forbidden_names})
        missing = [r for r in roots if r not in graph.modules]
        if missing:  # a typo, or include_external_packages is off: the contract would check nothing
            raise ValueError(f"forbidden_names: {', '.join(missing)} is not in the import graph "
                             "(is include_external_packages = true?)")
        violations = []
        for module in sorted(graph.modules):
            if not in_any(module, self.source_modules) or in_any(module, self.allowed_importers):
                continue
            for root in roots:
                for detail in graph.get_import_details(importer=module, imported=root):
                    for name in imported_names(module, detail["line_number"], detail["line_contents"]):
                        if any(matches(name, pattern) for pattern in self.forbidden_names):
                            violations.append({"importer": module, "name": name, "line_number": detail["line_number"]})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            output.print_error(f"{v['importer']} is not allowed to import {v['name']} (l.{v['line_number']})", bold=False)
        output.new_line()
