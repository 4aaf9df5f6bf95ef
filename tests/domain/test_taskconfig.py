"""Task config validation: every problem named with its JSON path, examples kept valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compute_to_data.domain.errors import ConfigError, NotAllowedError, SettingsError
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig, parse_json

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "task_type": "image_classification",
    "inputs": {"collection": "/tempZone/home/alice/imgs"},
    "output": {"collection": "/tempZone/home/alice/out"},
    "parameters": {"model": "/tempZone/home/alice/m.pt", "labels": "/tempZone/home/alice/l.txt"},
}


def problems(doc) -> list[str]:
    with pytest.raises(ConfigError) as info:
        TaskConfig.from_document(doc)
    return info.value.problems


@pytest.mark.parametrize("example", sorted((ROOT / "config" / "examples").glob("*.json")), ids=lambda p: p.name)
def test_examples_are_valid(example: Path) -> None:
    TaskConfig.from_json(example.read_text(), source=str(example))


def test_defaults_are_filled_in() -> None:
    config = TaskConfig.from_document(GOOD)
    assert config.compute_role == "GPU_COMPUTE" and config.skip_tagged and config.notebook == "classify_images"
    assert (config.class_attribute, config.score_attribute) == ("predictedclass", "predictedscore")
    assert config.archive_role is None


def test_every_problem_is_reported_with_its_path() -> None:
    doc = json.loads(json.dumps(GOOD))
    doc["inputs"]["colection"] = "typo"
    doc["parameters"]["batch_size"] = 0
    doc["output"]["collection"] = "relative/path"
    doc["compute"] = {"role": "QUANTUM"}
    found = problems(doc)
    assert any(p.startswith("$.inputs.colection: unknown field") for p in found)
    assert any(p.startswith("$.parameters.batch_size:") and "minimum" in p for p in found)
    assert any(p.startswith("$.output.collection:") for p in found)
    assert any(p.startswith("$.compute.role:") and "GPU_COMPUTE" in p for p in found)
    assert len(found) == 4


def test_missing_required_field_is_named() -> None:
    doc = json.loads(json.dumps(GOOD))
    del doc["parameters"]["labels"]
    assert problems(doc) == ["$.parameters.labels: required field is missing"]


@pytest.mark.parametrize("path", ["/tempZone/home/../x", "/tempZone//home/x", "/tempZone/home/./x"])
def test_paths_must_be_normalized(path: str) -> None:
    doc = json.loads(json.dumps(GOOD))
    doc["inputs"]["collection"] = path
    assert problems(doc)[0].startswith("$.inputs.collection:")


def test_notebook_must_be_a_name_not_a_path() -> None:
    doc = dict(GOOD, notebook="../../etc/evil")
    assert problems(doc)[0].startswith("$.notebook:")


def test_same_attribute_for_class_and_score_is_refused() -> None:
    doc = dict(GOOD, tagging={"class_attribute": "x", "score_attribute": "x"})
    assert "must differ" in problems(doc)[0]


def test_bad_json_names_line_and_column() -> None:
    with pytest.raises(ConfigError, match="line 1, column"):
        parse_json('{"task_type": }')


def test_paths_with_spaces_and_quotes_are_valid() -> None:
    doc = json.loads(json.dumps(GOOD))
    doc["inputs"]["collection"] = "/tempZone/home/alice/it's 100% cats"
    assert TaskConfig.from_document(doc).input_collection.endswith("100% cats")


def test_settings_allowlist_and_errors(tmp_path: Path) -> None:
    settings = Settings.from_document({"allowed_images": ["a:1", {"name": "b:2", "digest": "sha256:x"}], "default_image": "a:1"}, "test")
    assert settings.check_image(None).name == "a:1"
    assert settings.check_image("b:2").digest == "sha256:x"
    with pytest.raises(NotAllowedError, match="'evil:latest' is not allowed"):
        settings.check_image("evil:latest")
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_document({"alowed_images": []}, "test")
    with pytest.raises(SettingsError, match="uid:gid"):
        Settings.from_document({"container_user": "root"}, "test")
    missing = tmp_path / "nope.json"
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(missing)


def test_validate_command_lists_problems(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from compute_to_data.cli.main import app

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(GOOD, timeout_seconds=-1)))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0 and "valid" in ok.output
    failed = runner.invoke(app, ["validate", str(bad)])
    assert failed.exit_code != 0
    assert "$.timeout_seconds" in str(failed.exception)


def test_num_workers_defaults_to_auto_and_precision_to_fp32() -> None:
    config = TaskConfig.from_document(GOOD)
    assert (config.num_workers, config.precision) == ("auto", "fp32")
    assert config.notebook_parameters()["num_workers"] == "auto"
    assert config.notebook_parameters()["precision"] == "fp32"
    doc = json.loads(json.dumps(GOOD))
    doc["parameters"].update(num_workers=6, precision="bf16")
    config = TaskConfig.from_document(doc)
    assert (config.num_workers, config.precision) == (6, "bf16")
    assert config.notebook_parameters()["precision"] == "bf16"  # recorded as c2d::parameters


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("precision", "fp64", "$.parameters.precision: 'fp64' is not one of 'fp32', 'bf16', 'fp16'"),
    ("precision", "BF16", "$.parameters.precision: 'BF16' is not one of 'fp32', 'bf16', 'fp16'"),
    ("num_workers", "many", "$.parameters.num_workers: 'many' is not valid: DataLoader worker processes"),
    ("num_workers", -1, "$.parameters.num_workers: -1 is not valid: DataLoader worker processes"),
    ("num_workers", 65, "$.parameters.num_workers: 65 is not valid:"),
    ("num_workers", 2.5, "$.parameters.num_workers: 2.5 is not valid:"),
])
def test_precision_and_num_workers_are_validated_with_clear_errors(field, value, expected) -> None:
    doc = json.loads(json.dumps(GOOD))
    doc["parameters"][field] = value
    found = problems(doc)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_documented_schema_is_the_packaged_one() -> None:
    documented = ROOT / "config" / "task_config.schema.json"
    packaged = ROOT / "compute_to_data" / "schemas" / "task_config.schema.json"
    assert documented.read_bytes() == packaged.read_bytes()


def test_gpu_image_is_used_on_resources_with_gpus_when_the_task_names_none() -> None:
    settings = Settings.from_document(
        {"allowed_images": ["cpu:1", "cuda:1", "other:1"], "default_image": "cpu:1", "gpu_image": "cuda:1"}, "test")
    assert settings.image_for(None, gpus=0).name == "cpu:1"
    assert settings.image_for(None, gpus=2).name == "cuda:1"
    assert settings.image_for("other:1", gpus=2).name == "other:1"  # the task's own choice wins
    with pytest.raises(NotAllowedError, match="'evil:1' is not allowed"):
        settings.image_for("evil:1", gpus=1)
    assert Settings.from_document(settings.to_document(), "again").gpu_image == "cuda:1"


def test_gpu_image_must_be_allowed_and_may_stand_alone() -> None:
    with pytest.raises(SettingsError, match="gpu_image 'cuda:1' is not in allowed_images"):
        Settings.from_document({"allowed_images": ["cpu:1"], "gpu_image": "cuda:1"}, "test")
    gpu_only = Settings.from_document({"allowed_images": ["cuda:1"], "gpu_image": "cuda:1"}, "test")
    gpu_only.check_image_choice(None)  # some resource can run it
    assert gpu_only.image_for(None, gpus=1).name == "cuda:1"
    with pytest.raises(NotAllowedError, match="define no default_image"):
        gpu_only.image_for(None, gpus=0)
    with pytest.raises(NotAllowedError, match="define no default_image"):
        Settings.from_document({"allowed_images": ["cpu:1"]}, "test").check_image_choice(None)
    with pytest.raises(NotAllowedError, match="'x:1' is not allowed"):
        gpu_only.check_image_choice("x:1")


def _nested(depth: int) -> str:
    """GOOD with ``inputs.pattern`` nested ``depth`` arrays deep (the JSON text; no Python recursion)."""
    return json.dumps(GOOD).replace('"inputs": {', '"inputs": {"pattern": ' + "[" * depth + "]" * depth + ", ", 1)


@pytest.mark.parametrize("depth", [40, 900, 2000, 100_000])
def test_a_deeply_nested_config_gets_a_one_line_error(depth: int) -> None:
    with pytest.raises(ConfigError, match="nest more than 32 levels deep") as info:
        TaskConfig.from_json(_nested(depth))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", ["validate", "submit"])
def test_validate_and_submit_of_a_deeply_nested_config_say_so_in_one_line(tmp_path: Path, command: str) -> None:
    import subprocess
    import sys

    from tests.support.engine_support import make_grid

    make_grid(tmp_path)
    config = tmp_path / "deep.json"
    config.write_text(_nested(2000))
    extra = ["--local", str(tmp_path / "grid"), "--user", "alice"] if command == "submit" else []
    done = subprocess.run([sys.executable, "-m", "compute_to_data", command, str(config), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {config} is invalid: objects and arrays nest more than 32 levels deep; a task config needs only "
        "a few (see config/examples)"]


@pytest.mark.parametrize("every", ["1d\n", "6h\n", "30m\r\n", " 1d", "1d "])
def test_a_schedule_with_a_trailing_newline_or_space_is_refused(every: str) -> None:
    found = problems(dict(GOOD, schedule={"every": every}))
    assert len(found) == 1 and found[0].startswith(f"$.schedule.every: {every!r} is not valid"), found


def test_patterns_anchor_at_the_end_of_the_string_as_json_schema_means() -> None:
    found = problems(dict(GOOD, notebook="classify_images\n"))
    assert len(found) == 1 and found[0].startswith("$.notebook:"), found
    assert TaskConfig.from_document(dict(GOOD, schedule={"every": "1d"})).schedule_seconds == 86400


@pytest.mark.parametrize("notebook", ["summarize_task", "summarize_task.ipynb"])
def test_the_summary_notebook_is_refused_for_a_classification_task(notebook: str) -> None:
    found = problems(dict(GOOD, notebook=notebook))
    assert len(found) == 1 and found[0].startswith(f"$.notebook: {notebook!r} summarizes the shards"), found
    assert "classify_images" in found[0]
