"""``c2d local ...``: enough to script the demo and the tests from a shell."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_to_data.cli.main import app
from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType
from compute_to_data.grid.local import LocalGrid

HOME = "/tempZone/home/alice"


@pytest.fixture()
def grid_dir(tmp_path: Path) -> Path:
    return tmp_path / "grid"


@pytest.fixture()
def c2d(grid_dir: Path):
    runner = CliRunner()

    def invoke(*args: str, user: str = "rods", ok: bool = True):
        result = runner.invoke(app, ["local", *args], env={"C2D_LOCAL_GRID": str(grid_dir), "C2D_USER": user})
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        else:
            assert result.exit_code == 1, (args, result.output, result.exception)
        return result

    return invoke


@pytest.fixture()
def populated(c2d, grid_dir: Path, tmp_path: Path):
    c2d("init", str(grid_dir))
    c2d("mkresc", "lts_resc")
    c2d("mkresc", "gpu_resc", "--host", "localhost")
    c2d("meta", "add", "-R", "gpu_resc", "COMPUTE_RESOURCE_ROLE", "GPU_COMPUTE")
    c2d("meta", "add", "-R", "lts_resc", "COMPUTE_RESOURCE_ROLE", "LONG_TERM_STORAGE")
    c2d("mkuser", "alice")
    c2d("mkuser", "bob")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.png").write_bytes(b"aaa")
    (tree / "sub" / "b.png").write_bytes(b"bb")
    c2d("put", "-r", "-R", "lts_resc", str(tree), "imgs", user="alice")
    return c2d


def test_init_and_setup(populated, grid_dir: Path) -> None:
    g = LocalGrid(grid_dir)
    assert [r.name for r in g.find_resources("COMPUTE_RESOURCE_ROLE", "GPU_COMPUTE")] == ["gpu_resc"]
    alice = g.as_user("alice")
    assert [o.path for o in alice.list_data_objects(f"{HOME}/imgs", recursive=True)] == [
        f"{HOME}/imgs/a.png", f"{HOME}/imgs/sub/b.png"
    ]
    assert alice.has_access(f"{HOME}/imgs/a.png", AccessLevel.OWN)


def test_init_zone_and_existing(c2d, grid_dir: Path) -> None:
    result = c2d("init", str(grid_dir), "--zone", "demoZone")
    assert "demoZone" in result.output
    assert LocalGrid(grid_dir).zone == "demoZone"
    result = c2d("init", str(grid_dir), ok=False)
    assert "already holds a LocalGrid" in result.output


def test_lsresc(populated) -> None:
    out = populated("lsresc").output
    assert "gpu_resc  host=localhost" in out
    assert "COMPUTE_RESOURCE_ROLE = GPU_COMPUTE" in out
    assert out.index("gpu_resc") < out.index("lts_resc")


def test_ls_and_long_listing(populated, grid_dir: Path) -> None:
    out = populated("ls", "imgs", user="alice").output
    assert out.splitlines() == [f"{HOME}/imgs:", "  a.png", f"  C- {HOME}/imgs/sub"]
    populated("repl", f"{HOME}/imgs/a.png", "-R", "gpu_resc", user="alice")
    out = populated("ls", "-l", f"{HOME}/imgs", user="alice").output
    assert "a.png  3 bytes  sha2:" in out
    assert f"0 lts_resc & 3 {grid_dir.resolve()}/vaults/lts_resc/home/alice/imgs/a.png" in out
    assert f"1 gpu_resc & 3 {grid_dir.resolve()}/vaults/gpu_resc/home/alice/imgs/a.png" in out
    home = populated("ls", user="alice").output
    assert home.splitlines()[0] == f"{HOME}:"
    one = populated("ls", "-l", "imgs/sub/b.png", user="alice").output
    assert "b.png  2 bytes" in one


def test_put_single_file_force_and_cat(populated, tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text('{"a": 1}')
    populated("put", "-R", "lts_resc", str(f), "imgs", user="alice")  # into a collection: keeps the name
    assert populated("cat", "imgs/config.json", user="alice").output == '{"a": 1}'
    result = populated("put", "-R", "lts_resc", str(f), "imgs/config.json", user="alice", ok=False)
    assert "already exists" in result.output
    f.write_text('{"a": 2}')
    populated("put", "-f", "-R", "lts_resc", str(f), "imgs/config.json", user="alice")
    assert populated("cat", "imgs/config.json", user="alice").output == '{"a": 2}'
    result = populated("put", str(f), "imgs/x.json", user="alice", ok=False)  # two resources: say which
    assert "-R" in result.output and "gpu_resc" in result.output
    result = populated("put", "-R", "lts_resc", str(tmp_path), "imgs/x", user="alice", ok=False)
    assert "use -r" in result.output


def test_mkdir_chmod_and_access(populated, grid_dir: Path) -> None:
    populated("mkdir", "results/2026", user="alice")
    g = LocalGrid(grid_dir, user="bob")
    assert not g.collection_exists(f"{HOME}/results/2026")
    result = populated("ls", f"{HOME}/imgs", user="bob", ok=False)
    assert "does not exist or user 'bob' has no access" in result.output
    populated("chmod", "-r", "read", "bob", f"{HOME}/imgs", user="alice")
    assert "a.png" in populated("ls", f"{HOME}/imgs", user="bob").output
    result = populated("meta", "add", "-d", f"{HOME}/imgs/a.png", "k", "v", user="bob", ok=False)
    assert "needs modify_object" in result.output
    populated("chmod", "write", "bob", f"{HOME}/imgs/a.png", user="alice")
    populated("meta", "add", "-d", f"{HOME}/imgs/a.png", "k", "v", user="bob")
    result = populated("chmod", "sudo", "bob", f"{HOME}/imgs", user="alice", ok=False)
    assert "unknown iRODS access level" in result.output
    result = populated("mkresc", "x", user="alice", ok=False)
    assert "rodsadmin" in result.output


def test_meta_add_set_rm_ls(populated, grid_dir: Path) -> None:
    obj = "imgs/a.png"
    populated("meta", "add", "-d", obj, "predictedclass", "3", "c2d:t1", user="alice")
    populated("meta", "add", "-d", obj, "predictedclass", "5", user="alice")
    out = populated("meta", "ls", "-d", obj, user="alice").output
    assert out.splitlines() == [
        f"AVUs defined for dataObj {HOME}/imgs/a.png:",
        "attribute: predictedclass", "value: 3", "units: c2d:t1", "----",
        "attribute: predictedclass", "value: 5", "units: ",
    ]
    populated("meta", "set", "-d", obj, "predictedclass", "7", "c2d:t2", user="alice")
    alice = LocalGrid(grid_dir, user="alice")
    assert alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/{obj}") == [AVU("predictedclass", "7", "c2d:t2")]
    result = populated("meta", "rm", "-d", obj, "predictedclass", "7", user="alice", ok=False)  # units differ
    assert "no AVU" in result.output
    populated("meta", "rm", "-d", obj, "predictedclass", "7", "c2d:t2", user="alice")
    assert "None" in populated("meta", "ls", "-d", obj, user="alice").output
    populated("meta", "add", "-C", "imgs", "c2d::state", "queued", user="alice")
    assert "value: queued" in populated("meta", "ls", "-C", "imgs", user="alice").output
    assert "value: GPU_COMPUTE" in populated("meta", "ls", "-R", "gpu_resc").output
    populated("meta", "add", "-u", "alice", "dept", "bio")
    assert "value: bio" in populated("meta", "ls", "-u", "alice").output
    result = populated("meta", "add", "-R", "gpu_resc", "COMPUTE_RESOURCE_GPUS", "2", user="alice", ok=False)
    assert "rodsadmin" in result.output
    result = populated("meta", "ls", "-d", "-C", obj, user="alice", ok=False)
    assert "exactly one" in result.output
    result = populated("meta", "add", "-d", obj, "predictedclass", "1", user="alice")
    result = populated("meta", "add", "-d", obj, "predictedclass", "1", user="alice", ok=False)
    assert "already has" in result.output


def test_missing_grid_is_a_clear_error(c2d, grid_dir: Path) -> None:
    result = c2d("ls", ok=False)
    assert "no LocalGrid" in result.output and "c2d local init" in result.output


def test_lsuser_and_unknown_user(populated) -> None:
    out = populated("lsuser").output
    assert "alice\trodsuser" in out and "rods\trodsadmin" in out
    result = populated("ls", user="mallory", ok=False)
    assert "mallory" in result.output and "mkuser" in result.output
