"""The toolkit and the server install apart, so each import must stay on its side of the line.

A laptop gets the project's own dependencies (the toolkit); a host gets the ``server`` group. The rule
is read from the dependency sets themselves: no module the toolkit runs (``provision`` and whatever
first-party module it reaches, such as ``mcp_sales.mapping``) imports a module that only the server set
installs, and no server module imports one that only the toolkit installs. Imports inside functions
count: a laptop would hit them as soon as the command ran.
"""

from __future__ import annotations

from pathlib import Path

from tests.packaging import dependency_sets as sets

# What a laptop must never download, and what a host never needs: if the lock put one of these on the
# wrong side, the rules below would be checking against the wrong sets.
HEAVY = {"pandas", "duckdb", "prophet", "pyarrow", "numpy", "matplotlib", "cmdstanpy"}
TOOLKIT_ONLY = {"asyncssh", "typer", "rich"}


def _offenders(files: set[Path], forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted(files):
        for name, line in sets.imports_of(path):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(sets.REPO).as_posix()}:{line} imports {name}")
    return sorted(set(found))


def test_the_server_extra_and_the_server_group_are_the_same_list() -> None:
    project = sets.pyproject()
    extra = sorted(project["project"]["optional-dependencies"]["server"])
    group = sorted(project["dependency-groups"]["server"])
    assert extra == group, "keep [project.optional-dependencies] server and [dependency-groups] server equal"


def test_a_checkout_installs_everything_by_default() -> None:
    assert set(sets.pyproject()["tool"]["uv"]["default-groups"]) >= {"dev", "server"}


def test_the_toolkit_set_holds_none_of_the_data_stack_and_the_server_set_none_of_the_toolkit() -> None:
    toolkit, server = sets.toolkit(), sets.server()
    assert server >= HEAVY and not HEAVY & toolkit
    assert toolkit >= TOOLKIT_ONLY and not TOOLKIT_ONLY & server


def test_no_toolkit_module_imports_a_server_only_package() -> None:
    server_only = sets.modules_of(sets.server() - sets.toolkit())
    assert {"pandas", "duckdb", "prophet"} <= server_only  # the map found the installed modules
    files = sets.toolkit_files()
    assert sets.REPO / "mcp_sales" / "mapping.py" in files  # the profile model's column rules
    assert _offenders(files, server_only) == []


def test_no_server_module_imports_the_toolkit() -> None:
    toolkit_only = sets.modules_of(sets.toolkit() - sets.server()) | {"provision"}
    assert {"asyncssh", "typer"} <= toolkit_only
    assert _offenders(set((sets.REPO / "mcp_sales").rglob("*.py")), toolkit_only) == []


def test_the_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import pandas.api\n    from duckdb import connect\n")
    found = {name for name, _ in sets.imports_of(module)}
    assert {"pandas.api", "duckdb"} <= found
