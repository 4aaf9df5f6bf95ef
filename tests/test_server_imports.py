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
from compute_to_data.settings import Settings
planned = rules.DeferredRunner("auto", Settings(allowed_runners=("docker", "inprocess")))
planned.uses_container_paths  # imports the docker runner's module (as validation does), runs nothing
import compute_to_data.tasks.image_classification  # the task type the engine loads by name
print(json.dumps({"names": sorted(rules.__all__), "loaded": sorted(sys.modules)}))
"""


def test_importing_the_rulebase_pulls_in_no_heavy_package() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["names"] == sorted(["c2d_run", "c2d_submit", "c2d_status", "c2d_cancel", "c2d_run_task", "c2d_cancel_here"])
    loaded = {name.split(".")[0] for name in report["loaded"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # the plugin's own modules are imported only when a rule runs inside the server
    assert not loaded & {"genquery", "session_vars", "irods_types"}
