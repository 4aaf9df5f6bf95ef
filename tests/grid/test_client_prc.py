"""IrodsClientGrid (python-irodsclient adapter) against fakes of the PRC objects it uses.

The fake (tests/fakes/prc_fake.py) evaluates the GenQuery condition text PRC would send, so quoting,
bulk queries and error translation are checked as the server would see them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from irods import exception as prc
from irods.password_obfuscation import encode

from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType, MetadataOperation, PredictionQuery
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    AuthenticationError,
    ComputeToDataError,
    GridError,
    GridUnreachableError,
    NotAllowedError,
    ObjectNotFoundError,
)
from compute_to_data.grid import client as client_module
from compute_to_data.grid.base import Grid
from compute_to_data.grid.client import (
    NATIVE_RULE_ENGINE,
    IrodsClientGrid,
    IrodsConnectionOptions,
    rule_error,
    translate_error,
)
from tests.fakes.prc_fake import READ, FakeCatalog, FakeRule, FakeSession

Z = "/tempZone"
HOME = f"{Z}/home/alice"
HOSTILE = "it's 50%_off [x] é.png"


@pytest.fixture
def catalog() -> FakeCatalog:
    cat = FakeCatalog()
    cat.add_user("alice", "alice-pw")
    cat.add_user("bob", "bob-pw")
    cat.add_resource("gpu_resc", "gpu.example.org", "/gpu", COMPUTE_RESOURCE_ROLE="GPU_COMPUTE", COMPUTE_RESOURCE_GPUS="2")
    cat.add_resource("lts_resc", "lts.example.org", "/lts", COMPUTE_RESOURCE_ROLE="LONG_TERM_STORAGE")
    return cat


def grid_as(catalog: FakeCatalog, user: str = "alice") -> IrodsClientGrid:
    return IrodsClientGrid(FakeSession(catalog, user, catalog.passwords[user]), rule_class=FakeRule)


@pytest.fixture
def alice(catalog: FakeCatalog) -> IrodsClientGrid:
    return grid_as(catalog, "alice")


# --- connecting like the icommands --------------------------------------------------------------------
@pytest.fixture
def irods_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    env = tmp_path / "irods_environment.json"
    env.write_text(json.dumps({
        "irods_host": "irods.example.org", "irods_port": 1247, "irods_user_name": "alice",
        "irods_zone_name": "tempZone", "irods_default_resource": "lts_resc",
        "irods_client_server_policy": "CS_NEG_REFUSE",
    }))
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(env))
    monkeypatch.setenv("IRODS_AUTHENTICATION_FILE", str(tmp_path / ".irodsA"))
    return env


def write_auth_file(tmp_path: Path, password: str) -> None:
    (tmp_path / ".irodsA").write_text(encode(password))


def test_connect_reads_environment_and_auth_file(catalog, irods_env, tmp_path):
    write_auth_file(tmp_path, "alice-pw")
    made = []

    def factory(**kwargs):
        made.append(kwargs)
        return catalog.session_factory(**kwargs)

    def no_prompt(label):
        raise AssertionError("must not prompt when iinit stored a password")

    grid = IrodsClientGrid.connect(session_factory=factory, prompt=no_prompt)
    assert grid.user == "alice" and grid.zone == "tempZone" and grid.kind == "irods"
    kwargs = made[0]
    assert kwargs["irods_host"] == "irods.example.org" and kwargs["irods_port"] == 1247
    assert kwargs["password"] == "alice-pw"
    assert kwargs["irods_client_server_policy"] == "CS_NEG_REFUSE"  # other settings pass through
    assert kwargs["irods_default_resource"] == "lts_resc"
    assert catalog.connections == 1  # logged in right away


def test_explicit_options_win_and_another_user_is_prompted(catalog, irods_env, tmp_path):
    write_auth_file(tmp_path, "alice-pw")  # alice's password: must not be used for bob
    asked = []

    def prompt(label):
        asked.append(label)
        return "bob-pw"

    options = IrodsConnectionOptions(user="bob", host="other.example.org", port=2247)
    made = []
    grid = IrodsClientGrid.connect(options, prompt=prompt, session_factory=lambda **kw: made.append(kw) or catalog.session_factory(**kw))
    assert grid.user == "bob"
    assert made[0]["irods_host"] == "other.example.org" and made[0]["irods_port"] == 2247
    assert asked and "bob#tempZone" in asked[0]


def test_wrong_password_is_a_clear_authentication_error(catalog, irods_env):
    with pytest.raises(AuthenticationError) as caught:
        IrodsClientGrid.connect(password="nope", session_factory=catalog.session_factory)
    text = str(caught.value)
    assert "wrong user name or password" in text and "alice#tempZone" in text
    assert "Traceback" not in text and "None" not in text


def test_outdated_stored_password_suggests_iinit(catalog, irods_env, tmp_path):
    write_auth_file(tmp_path, "old-password")
    with pytest.raises(AuthenticationError, match="run iinit again"):
        IrodsClientGrid.connect(session_factory=catalog.session_factory)


def test_no_password_without_terminal_says_what_to_do(catalog, irods_env):
    with pytest.raises(AuthenticationError, match="iinit"):
        IrodsClientGrid.connect(session_factory=catalog.session_factory, prompt=None)
    # The terminal prompt refuses when stdin is not a terminal (as under pytest).
    with pytest.raises(AuthenticationError, match="run iinit"):
        client_module.terminal_prompt("password: ")


def test_missing_settings_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("IRODS_ENVIRONMENT_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(GridError, match="irods_host, irods_port, irods_zone_name, irods_user_name missing"):
        IrodsConnectionOptions().environment()
    with pytest.raises(GridError, match="does not exist"):
        IrodsConnectionOptions(env_file=str(tmp_path / "nope.json")).environment()
    env = IrodsConnectionOptions(host="h", port=1247, zone="z").environment(require_user=False)
    assert env["irods_host"] == "h"


def test_unreachable_server(catalog, irods_env):
    options = IrodsConnectionOptions(host="unreachable.invalid")
    with pytest.raises(GridError, match="cannot reach the iRODS server unreachable.invalid:1247"):
        IrodsClientGrid.connect(options, password="alice-pw", session_factory=catalog.session_factory)


# --- namespace and quoting ----------------------------------------------------------------------------
def test_hostile_names_follow_the_one_quoting_policy(catalog, alice):
    path = f"{HOME}/imgs/{HOSTILE}"
    catalog.mkobj(path, "alice", b"abc")
    catalog.mkobj(f"{HOME}/imgs/plain.png", "alice", b"x")
    catalog.mkobj(f"{HOME}/imgs/itXs 50%_off [x] é.png", "alice", b"decoy")  # what the widened LIKE also finds
    assert alice.data_object_exists(path)
    assert not alice.data_object_exists(f"{HOME}/imgs/it's 50%_off [x] e.png")
    obj = alice.get_data_object(path)
    assert obj.path == path and obj.size == 3
    assert [o.name for o in alice.list_data_objects(f"{HOME}/imgs")] == [HOSTILE, "itXs 50%_off [x] é.png", "plain.png"]
    # What went to the "server": a LIKE with the quote replaced, never a quote inside a literal.
    sent = [c for _, conds in catalog.queries for c in conds]
    assert any("DATA_NAME like 'it_s 50%_off [x] é.png'" in c for c in sent)
    assert all(c.count("'") % 2 == 0 and "''" not in c.strip("'") for c in sent), sent


def test_the_fake_refuses_what_the_genquery_parser_refuses(catalog, alice):
    """A value quoted as the adapter once did (doubled) or not at all never reaches a row."""
    from irods.models import DataObject as D

    catalog.mkobj(f"{HOME}/imgs/it's.png", "alice")
    session = alice.session
    with pytest.raises(prc.INPUT_ARG_NOT_WELL_FORMED_ERR):
        session.query(D.id).filter(D.name == "it's.png").all()
    with pytest.raises(prc.INPUT_ARG_NOT_WELL_FORMED_ERR):
        session.query(D.id).filter(D.name == "it\\'s.png").all()
    # accepted by the parser, but read verbatim by the SQL generator: no match
    assert session.query(D.id).filter(D.name == "it''s.png").all() == []


def test_get_data_object_groups_replicas(catalog, alice):
    path = f"{HOME}/imgs/a.png"
    catalog.mkobj(path, "alice", b"abcd", predictedclass=("3", "c2d:T"), other="x")
    alice.replicate(path, "gpu_resc")
    alice.replicate(path, "gpu_resc")  # idempotent
    obj = alice.get_data_object(path, avu_attributes=["predictedclass"])
    assert [r.resource_name for r in obj.replicas] == ["demoResc", "gpu_resc"]
    assert obj.good_replica_on("gpu_resc") is not None and obj.size == 4 and obj.checksum == "sha2:abc"
    assert obj.avus == (AVU("predictedclass", "3", "c2d:T"),)
    with pytest.raises(ObjectNotFoundError):
        alice.get_data_object(f"{HOME}/imgs/missing.png")


def test_list_recursive_matches_like_wildcards_literally(catalog, alice):
    catalog.mkobj(f"{HOME}/a_b/x.png", "alice")
    catalog.mkobj(f"{HOME}/a_b/sub/y.png", "alice")
    catalog.mkobj(f"{HOME}/aXb/z.png", "alice")  # '_' in LIKE would match 'X'
    catalog.mkobj(f"{HOME}/a_bc/w.png", "alice")  # prefix without the slash
    found = [o.path for o in alice.list_data_objects(f"{HOME}/a_b", recursive=True)]
    assert found == [f"{HOME}/a_b/sub/y.png", f"{HOME}/a_b/x.png"]
    assert [o.path for o in alice.list_data_objects(f"{HOME}/a_b")] == [f"{HOME}/a_b/x.png"]
    with pytest.raises(ObjectNotFoundError):
        alice.list_data_objects(f"{HOME}/nope")
    assert alice.list_collections(HOME) == [f"{HOME}/aXb", f"{HOME}/a_b", f"{HOME}/a_bc"]


def test_listing_fetches_avus_in_bulk(catalog, alice):
    for i in range(40):
        catalog.mkobj(f"{HOME}/many/{i:02d}.png", "alice", predictedclass=(str(i % 3), "c2d:T"))
    catalog.queries.clear()
    objects = alice.list_data_objects(f"{HOME}/many", recursive=True, avu_attributes=["predictedclass", "predictedscore"])
    assert len(objects) == 40 and all(o.avus for o in objects)
    # not one query per object: the caller's ids (2, once per session), the collection's
    # visibility, then per part of the listing its replicas, the caller's access and the AVUs
    assert len(catalog.queries) <= 9


def test_iter_data_objects_pages_per_collection(catalog, alice):
    for sub in ("a_b", "a_b/sub", "aXb"):
        for i in range(3):
            catalog.mkobj(f"{HOME}/{sub}/{i}.png", "alice", predictedclass=(str(i), "c2d:T"))
    catalog.mkobj(f"{HOME}/a_b/sub/theirs.png", "bob")  # not readable by alice
    pages = list(alice.iter_data_objects(f"{HOME}/a_b", recursive=True, avu_attributes=["predictedclass"], page_size=2))
    assert [[o.path for o in page] for page in pages] == [
        [f"{HOME}/a_b/0.png", f"{HOME}/a_b/1.png"], [f"{HOME}/a_b/2.png"],
        [f"{HOME}/a_b/sub/0.png", f"{HOME}/a_b/sub/1.png"], [f"{HOME}/a_b/sub/2.png"],
    ]
    assert all(o.avus for page in pages for o in page)


# --- resources -----------------------------------------------------------------------------------------
def test_resources(alice):
    gpu = alice.find_resources("COMPUTE_RESOURCE_ROLE", "GPU_COMPUTE")
    assert [r.name for r in gpu] == ["gpu_resc"]
    assert gpu[0].host == "gpu.example.org" and gpu[0].avu_int("COMPUTE_RESOURCE_GPUS", 0) == 2
    assert {r.name for r in alice.find_resources("COMPUTE_RESOURCE_ROLE")} == {"gpu_resc", "lts_resc"}
    assert alice.get_resource("lts_resc").vault_path == "/lts"
    with pytest.raises(ObjectNotFoundError):
        alice.get_resource("nope")


# --- permissions ---------------------------------------------------------------------------------------
def test_access_levels_through_user_and_groups(catalog, alice):
    path = f"{HOME}/acl/a.png"
    catalog.mkobj(path, "alice")
    bob = grid_as(catalog, "bob")
    assert alice.has_access(path, AccessLevel.OWN)
    with pytest.raises(ObjectNotFoundError):  # bob holds nothing on it: it does not exist for him
        bob.has_access(path, AccessLevel.READ)
    assert not bob.data_object_exists(path)
    catalog.grant("public", READ, path)  # via the public group
    assert bob.has_access(path, AccessLevel.READ) and not bob.has_access(path, AccessLevel.MODIFY)
    assert bob.data_object_exists(path)
    assert alice.has_access(HOME, AccessLevel.OWN)
    with pytest.raises(ObjectNotFoundError):
        bob.has_access(HOME, AccessLevel.READ)
    assert not bob.collection_exists(HOME)
    with pytest.raises(ObjectNotFoundError):
        bob.has_access(f"{HOME}/nothing", AccessLevel.READ)


def test_paths_lacking_access_in_bulk(catalog):
    paths = [f"{HOME}/bulk/{i}.png" for i in range(30)]
    for p in paths:
        catalog.mkobj(p, "alice")
    for p in paths[:10]:
        catalog.grant("bob", READ, p)
    coll = f"{HOME}/bulk"
    bob = grid_as(catalog, "bob")
    catalog.queries.clear()
    lacking = bob.paths_lacking_access(paths + [coll, f"{HOME}/bulk/none.png"], AccessLevel.READ)
    assert lacking == paths[10:] + [coll, f"{HOME}/bulk/none.png"]
    # the caller's ids (2), then one query per collection and 20 names (the policy's in-list size)
    assert len(catalog.queries) <= 7
    catalog.grant("bob", READ, coll)
    assert bob.paths_lacking_access([coll], AccessLevel.READ) == []


# --- changes -------------------------------------------------------------------------------------------
def test_create_collection_and_put_file(catalog, alice, tmp_path):
    alice.create_collection(f"{HOME}/new/deep")
    alice.create_collection(f"{HOME}/new/deep")  # no error when it exists
    assert alice.collection_exists(f"{HOME}/new/deep")
    src = tmp_path / "c.json"
    src.write_text("{}")
    obj = alice.put_file(src, f"{HOME}/new/deep/c.json", "lts_resc")
    assert obj.replicas[0].resource_name == "lts_resc" and obj.size == 2
    with pytest.raises(AlreadyExistsError):
        alice.put_file(src, f"{HOME}/new/deep/c.json", "lts_resc")
    src.write_text('{"a": 1}')
    assert alice.put_file(src, f"{HOME}/new/deep/c.json", "", overwrite=True).size == 8
    bob = grid_as(catalog, "bob")
    with pytest.raises(AccessDeniedError):
        bob.create_collection(f"{HOME}/bobs")
    with pytest.raises(AccessDeniedError):
        bob.put_file(src, f"{HOME}/new/deep/b.json", "")


def test_metadata_batches_are_per_entity_and_atomic(catalog, alice):
    a, b = f"{HOME}/m/a.png", f"{HOME}/m/b.png"
    catalog.mkobj(a, "alice")
    catalog.mkobj(b, "alice", keep=("1", ""))
    alice.apply_metadata([
        MetadataOperation("add", EntityType.DATA_OBJECT, a, AVU("predictedclass", "3", "c2d:T")),
        MetadataOperation("add", EntityType.DATA_OBJECT, a, AVU("predictedscore", "0.9000", "c2d:T")),
        MetadataOperation("add", EntityType.COLLECTION, f"{HOME}/m", AVU("c2d::state", "queued")),
    ])
    assert alice.get_avus(EntityType.DATA_OBJECT, a) == [AVU("predictedclass", "3", "c2d:T"), AVU("predictedscore", "0.9000", "c2d:T")]
    assert alice.get_avus(EntityType.COLLECTION, f"{HOME}/m") == [AVU("c2d::state", "queued")]  # units "" not None
    with pytest.raises(GridError):  # a batch with a bad operation changes nothing
        alice.apply_metadata([
            MetadataOperation("add", EntityType.DATA_OBJECT, b, AVU("x", "1")),
            MetadataOperation("add", EntityType.DATA_OBJECT, b, AVU("empty", "")),
        ])
    assert alice.get_avus(EntityType.DATA_OBJECT, b) == [AVU("keep", "1")]
    alice.apply_metadata([  # removing what is not there is no error (as on a real server)
        MetadataOperation("add", EntityType.DATA_OBJECT, b, AVU("x", "1")),
        MetadataOperation("remove", EntityType.DATA_OBJECT, b, AVU("missing", "1")),
    ])
    assert alice.get_avus(EntityType.DATA_OBJECT, b) == [AVU("keep", "1"), AVU("x", "1")]
    alice.set_avus(EntityType.DATA_OBJECT, a, [AVU("predictedclass", "5", "c2d:U")], clear=["predictedscore"])
    assert alice.get_avus(EntityType.DATA_OBJECT, a) == [AVU("predictedclass", "5", "c2d:U")]
    with pytest.raises(AccessDeniedError):
        grid_as(catalog, "bob").apply_metadata([MetadataOperation("add", EntityType.DATA_OBJECT, a, AVU("v", "1"))])
    with pytest.raises(ObjectNotFoundError):
        alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/m/none.png")


def test_read_data_object(catalog, alice):
    path = f"{HOME}/r/a.bin"
    catalog.mkobj(path, "alice", b"0123456789")
    assert alice.read_data_object(path) == b"0123456789"
    with pytest.raises(GridError, match="larger than the 4 bytes"):
        alice.read_data_object(path, max_bytes=4)
    with pytest.raises(ObjectNotFoundError):
        alice.read_data_object(f"{HOME}/r/none")
    with pytest.raises(AccessDeniedError):
        grid_as(catalog, "bob").read_data_object(path)


def test_read_to_file_streams_through_data_objects_open(catalog, alice, tmp_path):
    path = f"{HOME}/r/a.bin"
    content = bytes(range(256)) * (5 * 4096 + 3)  # more than one 4 MiB read
    catalog.mkobj(path, "alice", content)
    target = tmp_path / "a.bin"
    assert alice.read_to_file(path, target) == len(content) and target.read_bytes() == content
    assert [r.resource_name for r in alice.get_data_object(path).replicas] == ["demoResc"]  # nothing registered
    with pytest.raises(ObjectNotFoundError):
        alice.read_to_file(f"{HOME}/r/none", tmp_path / "none")
    with pytest.raises(AccessDeniedError):
        grid_as(catalog, "bob").read_to_file(path, tmp_path / "bob")


def test_find_collections_with_avu(catalog, alice):
    for name, state in (("results/T1", "succeeded"), ("results/T2", "running"), ("results_x/T3", "queued")):
        coll = catalog.mkcoll(f"{HOME}/{name}", "alice")
        coll.avus = [("c2d::task_id", name[-2:], ""), ("c2d::state", state, "")]
    found = alice.find_collections_with_avu("c2d::task_id", under=f"{HOME}/results")
    assert [c.path for c in found] == [f"{HOME}/results/T1", f"{HOME}/results/T2"]
    assert found[1].first("c2d::state") == "running"
    assert [c.path for c in alice.find_collections_with_avu("c2d::task_id", "T3")] == [f"{HOME}/results_x/T3"]


# --- rules ---------------------------------------------------------------------------------------------
def test_run_rule_sends_unquoted_params_to_the_native_engine(catalog, alice):
    catalog.rules["c2d_submit"] = lambda session, params: f"task 20261122T020304Z-3f9a1c queued ({params['*config']})\n"
    out = alice.run_rule("c2d_submit", {"*config": f"{HOME}/my config.json"})
    assert out == f"task 20261122T020304Z-3f9a1c queued ({HOME}/my config.json)\n"
    call = catalog.rule_calls[-1]
    assert call["body"] == "c2d_submit(*config)"
    assert call["params"] == {"*config": f"{HOME}/my config.json"}  # no quotes added
    assert call["instance_name"] == NATIVE_RULE_ENGINE and call["output"] == "ruleExecOut"
    assert call["session_cleanup"] is False  # keep the session's connections
    with pytest.raises(GridError):
        alice.run_rule("c2d_submit; rm", {})
    with pytest.raises(GridError):
        alice.run_rule("c2d_submit", {"config": "x"})


def test_rule_errors_keep_the_rules_message(catalog, alice):
    def refuse(session, params):
        raise prc.SYS_NO_API_PRIV("container image 'evil' is not allowed by the server settings")

    def invalid(session, params):
        raise prc.SYS_INVALID_INPUT_PARAM("task config is invalid: $.inputs.collection: required field is missing")

    catalog.rules.update(c2d_submit=refuse, c2d_cancel=invalid)
    with pytest.raises(NotAllowedError, match="^container image 'evil' is not allowed"):
        alice.run_rule("c2d_submit", {"*config": "/x"})
    with pytest.raises(ComputeToDataError, match=r"^task config is invalid: \$\.inputs"):
        alice.run_rule("c2d_cancel", {"*task": "/x"})
    with pytest.raises(GridError, match="rulebase installed"):
        alice.run_rule("c2d_status", {"*task": "/x"})


def test_translate_error_never_leaks_prc_types():
    cases = [
        (prc.CAT_INVALID_AUTHENTICATION(None), AuthenticationError),
        (prc.CAT_NO_ACCESS_PERMISSION(None), AccessDeniedError),
        (prc.CAT_UNKNOWN_COLLECTION(None), ObjectNotFoundError),
        (prc.DataObjectDoesNotExist(), ObjectNotFoundError),
        (prc.OVERWRITE_WITHOUT_FORCE_FLAG(), AlreadyExistsError),
        (prc.NetworkException("Could not connect"), GridUnreachableError),
        (ConnectionRefusedError(111, "Connection refused"), GridUnreachableError),
        (prc.SYS_INTERNAL_NULL_INPUT_ERR("boom"), GridError),
        (prc.CAT_INVALID_USER(None), ObjectNotFoundError),  # the table's meaning: no such user
    ]
    for exc, expected in cases:
        translated = translate_error(exc, "do it", endpoint="h:1247", user="alice#z")
        assert type(translated) is expected, (exc, translated)
        assert "do it" in str(translated) or expected is AuthenticationError
    assert translate_error(prc.CAT_NO_ACCESS_PERMISSION(None), "x").irods_code == -818000
    assert isinstance(rule_error(prc.CAT_INVALID_AUTHENTICATION(None), "r"), AuthenticationError)
    # while logging in, an unknown user name is a refused login
    assert type(translate_error(prc.CAT_INVALID_USER(None), "log in", login=True)) is AuthenticationError


def test_login_as_an_unknown_user_is_a_refused_login(catalog, tmp_path, monkeypatch):
    def unknown_user(**kwargs):
        session = catalog.session_factory(**kwargs)

        def refuse() -> None:
            raise prc.CAT_INVALID_USER(None)

        session._connect = refuse  # what the server answers a login naming an unknown user
        return session

    env = tmp_path / "env.json"
    env.write_text(json.dumps({"irods_host": "h", "irods_port": 1247, "irods_zone_name": "tempZone",
                               "irods_user_name": "nobody"}))
    with pytest.raises(AuthenticationError, match="refused the login"):
        IrodsClientGrid.connect(IrodsConnectionOptions(env_file=str(env)), password="x", session_factory=unknown_user)


def test_rule_exit_codes_pick_the_class_from_the_one_error_table(catalog, alice):
    from compute_to_data.domain import errors as c2d_errors
    from compute_to_data.domain import irods_codes as irods_errors
    from compute_to_data.domain.errors import TaskFailedError

    def exits(code: int):
        def handler(session, params):
            raise prc.get_exception_by_code(code, f"c2d_run: ended with {code}")
        return handler

    for code, expected in ((irods_errors.CAT_UNKNOWN_COLLECTION, ObjectNotFoundError),
                           (irods_errors.CAT_UNKNOWN_FILE, ObjectNotFoundError),
                           (irods_errors.CAT_NO_ACCESS_PERMISSION, AccessDeniedError),
                           (irods_errors.ACTION_FAILED_ERR, TaskFailedError),
                           (irods_errors.SYS_NO_API_PRIV, NotAllowedError)):
        catalog.rules["c2d_run"] = exits(code)
        with pytest.raises(expected, match=f"ended with {code}") as caught:
            alice.run_rule("c2d_run", {"*config": "/x"})
        assert caught.value.irods_code == code
        assert c2d_errors.error_class(code) is expected


def test_the_error_table_agrees_with_python_irodsclient():
    """Every code both know has the same name in PRC's irods.exception as in the project's table."""
    from compute_to_data.domain import irods_codes as irods_errors

    known = [row for row in irods_errors.TABLE if hasattr(prc, row.name)]
    assert len(known) > 50
    for row in known:
        assert getattr(prc, row.name).code == row.code, row.name


# --- predictions ---------------------------------------------------------------------------------------
@pytest.fixture
def predicted(catalog) -> tuple[FakeCatalog, PredictionQuery]:
    units = "c2d:T1"
    for i in range(23):
        sub = "sub/" if i % 5 == 0 else ""
        catalog.mkobj(f"{HOME}/imgs/{sub}im'g_{i:02d}.png", "alice",
                      predictedclass=(str(i % 3), units), predictedscore=("%.4f" % (i / 23), units),
                      **({"validated": "true"} if i % 4 == 0 else {}))
    catalog.mkobj(f"{HOME}/imgs/untagged.png", "alice")
    catalog.mkobj(f"{HOME}/imgs/other_task.png", "alice", predictedclass=("1", "c2d:T0"))
    catalog.mkobj(f"{HOME}/elsewhere/forged.png", "alice", predictedclass=("1", units))  # outside the inputs
    # a sibling sharing the prefix "imgs", sorting between imgs' own images and imgs/sub
    catalog.mkobj(f"{HOME}/imgs 2/sibling.png", "alice", predictedclass=("1", units), predictedscore=("0.5000", units))
    return catalog, PredictionQuery("T1", f"{HOME}/imgs", extra_attributes=("validated",))


@pytest.mark.parametrize("filters", [
    {}, {"predicted_class": "1"}, {"min_score": 0.3}, {"max_score": 0.5}, {"min_score": 0.2, "max_score": 0.7},
    {"predicted_class": "2", "min_score": 0.25}, {"predicted_class": "0", "max_score": 0.6}, {"predicted_class": "x"},
])
def test_query_predictions_agrees_with_the_port_default(predicted, filters):
    catalog, base = predicted
    grid = grid_as(catalog)
    query = PredictionQuery(**{**base.__dict__, **filters})
    expected_all = Grid.query_predictions(grid, query, 0, 1000).items
    assert all(item.path.startswith(f"{HOME}/imgs/") for item in expected_all)
    for offset, limit in ((0, 5), (4, 4), (0, 100), (20, 10)):
        page = grid.query_predictions(query, offset, limit)
        assert page.items == expected_all[offset : offset + limit], (filters, offset, limit)
        assert page.has_more == (offset + limit < len(expected_all))
    assert grid.count_predictions(query) == Grid.count_predictions(grid, query)


def test_replicas_do_not_double_count(predicted):
    catalog, query = predicted
    grid = grid_as(catalog)
    before = grid.count_predictions(query)
    for path in list(catalog.objects)[:10]:
        grid.replicate(path, "gpu_resc")
    assert grid.count_predictions(query) == before
    assert len(grid.query_predictions(query, 0, 100).items) == sum(before.values())


def test_one_page_costs_a_bounded_number_of_queries(predicted):
    catalog, query = predicted
    grid = grid_as(catalog)
    catalog.queries.clear()
    page = grid.query_predictions(query, 5, 10)
    assert len(page.items) == 10
    assert len(catalog.queries) <= 3
    assert page.items[0].avu_value("validated") in ("", "true")


def test_missing_things_carry_the_code_of_what_is_missing(catalog, alice):
    from compute_to_data.domain import irods_codes as irods_errors

    catalog.mkobj("/tempZone/home/bob/secret.png", "bob")
    for path in (f"{HOME}/missing.png", "/tempZone/home/bob/secret.png"):
        for call in (alice.get_data_object, lambda p: alice.get_avus(EntityType.DATA_OBJECT, p)):
            with pytest.raises(ObjectNotFoundError) as caught:
                call(path)
            assert caught.value.irods_code == irods_errors.CAT_UNKNOWN_FILE, path
        with pytest.raises(ObjectNotFoundError) as caught:
            alice.has_access(path, AccessLevel.READ)
        assert caught.value.irods_code == irods_errors.INVALID_OBJECT_TYPE
    for coll in (f"{HOME}/missing", "/tempZone/home/bob", "/tempZone/home"):
        for call in (alice.list_data_objects, alice.list_collections):
            with pytest.raises(ObjectNotFoundError) as caught:
                call(coll)
            assert caught.value.irods_code == irods_errors.CAT_UNKNOWN_COLLECTION, coll
    with pytest.raises(ObjectNotFoundError) as caught:
        alice.get_resource("nope")
    assert caught.value.irods_code == irods_errors.CAT_INVALID_RESOURCE
