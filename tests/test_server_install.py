"""The server install as docs/admin/install.md's step 2 documents it: Debian 12's packages (typer 0.7, rich 13.3,
jsonschema 4.10, docker 5.0), the wheel with ``--no-deps``, and ``c2d`` must work with exactly those.

``scripts/server-env`` reproduces that step in a virtual environment that sees the system's
packages; the test fails in CI (``$CI`` set) when it cannot, and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.setup_scripts import run_setup_script, unavailable

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "server-env"
#: apt-get may wait for the dpkg lock (lib.sh waits up to 600 s) and then download the packages
SCRIPT_TIMEOUT = 900


INSTALL = REPO / "docs" / "admin" / "install.md"


def _documented_packages() -> list[str]:
    """The Debian packages step 2 of the install page installs on each server."""
    text = INSTALL.read_text(encoding="utf-8")
    step = text.split("## 2. The package, in the server's Python", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"apt-get install -y ([^\n]+)", step)
    assert found, f"{INSTALL}: step 2 has no apt-get install line"
    return found.group(1).split()


def test_the_script_installs_what_the_install_page_says() -> None:
    listed = subprocess.run(["bash", str(SCRIPT), "--packages"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == _documented_packages()


@pytest.fixture(scope="module")
def server_c2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("server") / "venv"
    line, why = run_setup_script(SCRIPT, SCRIPT_TIMEOUT, str(venv))
    if line is None:
        unavailable("the documented server install (Debian's python3-typer & co., scripts/server-env)", why)
    return Path(line)


#: as on a server: no PYTHONPATH pointing at the checkout, no other virtual environment
SERVER_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _c2d(c2d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c2d), *args], capture_output=True, text=True, timeout=120, cwd=c2d.parent,
                          env=SERVER_ENV, check=False)


def test_the_installed_c2d_uses_debians_packages(server_c2d: Path) -> None:
    probe = subprocess.run(
        [str(server_c2d.parent / "python"), "-c",
         "import compute_to_data, typer, rich, jsonschema; print(compute_to_data.__file__); print(typer.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=server_c2d.parent, env=SERVER_ENV, check=True)
    package, typer_file = probe.stdout.split()
    assert package.startswith(str(server_c2d.parents[1])), package  # the wheel, not the checkout
    assert typer_file.startswith("/usr/lib/python3/dist-packages/"), typer_file  # Debian's typer


@pytest.mark.parametrize("args", [("--help",), ("image", "build", "--help"), ("version",)], ids=" ".join)
def test_c2d_starts_with_the_server_install(server_c2d: Path, args: tuple[str, ...]) -> None:
    done = _c2d(server_c2d, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.strip()


def test_c2d_validate_works_with_the_server_install(server_c2d: Path) -> None:
    example = REPO / "config" / "examples" / "minimal.json"
    done = _c2d(server_c2d, "validate", str(example))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"valid: {example}" in " ".join(done.stdout.split())
    bad = server_c2d.parents[1] / "bad.json"
    bad.write_text('{"task_type": "image_classification"}')
    refused = _c2d(server_c2d, "validate", str(bad))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "$.inputs: required field is missing" in refused.stderr


def test_cli_parameters_are_written_the_way_typer_0_7_understands() -> None:
    """A quick guard that runs everywhere (the install test needs Debian's packages): typer 0.7
    knows no ``Annotated`` parameters and no ``X | None`` option types (``Optional[X]`` it does)."""
    import ast

    found = []
    for module in sorted((REPO / "compute_to_data" / "cli").glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            arguments = [*node.args.args, *node.args.kwonlyargs]
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + list(node.args.defaults)
            defaults += list(node.args.kw_defaults)
            for argument, default in zip(arguments, defaults, strict=True):
                annotation = ast.unparse(argument.annotation) if argument.annotation is not None else ""
                given = ast.unparse(default) if default is not None else ""
                if "Annotated[" in annotation or ("|" in annotation and ("typer." in given or given.endswith("_OPT"))):
                    found.append(f"{module.name}:{node.name}({argument.arg}: {annotation})")
    assert not found, "use Optional[X] and a typer.Option/Argument default instead: " + ", ".join(found)
