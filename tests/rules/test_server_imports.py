"""What the iRODS server's Python imports with ``from compute_to_data.rules import *``.

The rulebase runs inside the server: it may import the standard library and light packages
(jsonschema, filelock, the docker SDK), never torch, papermill or nbconvert, which belong in the
container image. Checked in a fresh interpreter, as the server would load core.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "papermill", "nbconvert", "nbformat", "matplotlib", "PIL", "numpy", "IPython", "jupyter_client")

PROBE = """
import json, sys
from compute_to_data.rules import *  # noqa: F401,F403 - what core.py does
import compute_to_data.rules as rules
from compute_to_data.domain.settings import Settings
planned = rules.DeferredRunner("auto", Settings(allowed_runners=("docker", "inprocess")))
planned.uses_container_paths  # imports the docker runner's module (as validation does), runs nothing
import compute_to_data.engine.image_classification  # the task type the engine loads by name
print(json.dumps({"names": sorted(rules.__all__), "loaded": sorted(sys.modules)}))
"""


def test_importing_the_rulebase_pulls_in_no_heavy_package() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["names"] == sorted([
        "c2d_run", "c2d_submit", "c2d_status", "c2d_cancel", "c2d_resume", "c2d_run_task", "c2d_cancel_here",
        "c2d_reap_here", "c2d_series_step", "c2d_replicate_chunk",
    ])
    loaded = {name.split(".")[0] for name in report["loaded"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # the plugin's own modules are imported only when a rule runs inside the server
    assert not loaded & {"genquery", "session_vars", "irods_types"}


def test_installation_examples_are_consistent() -> None:
    """config/*.example: what the administrator's guide (docs/admin/install.md) says to install."""
    from pathlib import Path

    from compute_to_data.domain.settings import Settings

    config = Path(__file__).resolve().parents[2] / "config"
    settings = Settings.from_document(json.loads((config / "compute_to_data.json.example").read_text()), "example")
    assert settings.default_image and settings.allowed_runners == ("docker",) and not settings.upload_trigger_enabled
    core = (config / "core.py.example").read_text()
    compile(core, "core.py", "exec")
    assert "from compute_to_data.rules import *" in core.splitlines()
    engines = json.loads((config / "server_config.rule_engines.json.example").read_text())
    order = [e["instance_name"] for e in engines["plugin_configuration"]["rule_engines"]]
    assert order.index("irods_rule_engine_plugin-irods_rule_language-instance") < order.index(
        "irods_rule_engine_plugin-python-instance"
    )
    # the administrator's and the user's guide (docs/, the MkDocs site)
    pages = {page: (config.parent / "docs" / page).read_text() for page in ("admin/install.md", "user/run-a-task.md")}
    assert "# Install on an iRODS zone" in pages["admin/install.md"].splitlines()
    assert "# Run a task" in pages["user/run-a-task.md"].splitlines()
    docs = "\n".join(pages.values())
    for rule in ("c2d_run.r", "c2d_submit.r", "c2d_status.r", "c2d_cancel.r", "iqstat"):
        assert rule in docs
