"""Sub-commands ``c2d local ...``: script a LocalGrid like iadmin/iput/ils/imeta/ichmod would.

LocalGrid is the development and test stand-in for iRODS (see ``compute_to_data.grid.local``);
these commands exist so the demo and the tests can set one up from a shell. Every command but
``init`` takes ``--grid DIR`` (env ``C2D_LOCAL_GRID``) and ``--user NAME`` (env ``C2D_USER``,
default ``rods``, the rodsadmin).
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from compute_to_data.domain.catalog import (
    AVU,
    AccessLevel,
    EntityType,
)
from compute_to_data.domain.errors import ComputeToDataError, GridError
from compute_to_data.grid.local import ADMIN_USER, LocalGrid

app = typer.Typer(
    help="Set up and inspect a LocalGrid, the embedded iRODS stand-in for development and tests.",
    no_args_is_help=True,
)
meta_app = typer.Typer(help="AVUs, as imeta: add, set, rm, ls.", no_args_is_help=True)
app.add_typer(meta_app, name="meta")

F = TypeVar("F", bound=Callable[..., Any])

GRID_OPTION = typer.Option(
    ..., "--grid", "-g", envvar="C2D_LOCAL_GRID", help="LocalGrid directory (env C2D_LOCAL_GRID).",
    show_envvar=False,
)
USER_OPTION = typer.Option(ADMIN_USER, "--user", "-u", envvar="C2D_USER", help="Act as this user (env C2D_USER).")


def _handle_errors(func: F) -> F:
    """Print the project's errors as one readable line and exit 1 (also under CliRunner)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ComputeToDataError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _open(grid: Path, user: str) -> LocalGrid:
    return LocalGrid(grid, user=user)


def _absolute(g: LocalGrid, path: str) -> str:
    """Relative logical paths are taken from the user's home, as icommands do."""
    return path if path.startswith("/") else posixpath.normpath(posixpath.join(g.home(), path))


@app.command()
@_handle_errors
def init(
    directory: Path = typer.Argument(..., help="Directory to create the grid in."),
    zone: str = typer.Option("tempZone", "--zone", help="Zone name (first element of every path)."),
) -> None:
    """Create a new LocalGrid (catalog.sqlite + vaults/) with the rodsadmin 'rods'."""
    g = LocalGrid.create(directory, zone=zone)
    typer.echo(f"created LocalGrid at {g.root} (zone {g.zone}); export C2D_LOCAL_GRID={g.root}")


@app.command()
@_handle_errors
def mkresc(
    name: str = typer.Argument(..., help="Resource name."),
    host: str = typer.Option("localhost", "--host", help="Resource host (RESC_LOC)."),
    vault: Optional[Path] = typer.Option(None, "--vault", help="Vault directory (default <grid>/vaults/NAME)."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Create a unixfilesystem resource (rodsadmin only)."""
    r = _open(grid, user).make_resource(name, host=host, vault_path=vault)
    typer.echo(f"resource {r.name} on {r.host}, vault {r.vault_path}")


@app.command()
@_handle_errors
def mkuser(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="Make a rodsadmin instead of a rodsuser."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Add a user and its home collection (rodsadmin only)."""
    g = _open(grid, user)
    g.add_user(name, "rodsadmin" if admin else "rodsuser")
    typer.echo(f"user {name} with home /{g.zone}/home/{name}")


@app.command()
@_handle_errors
def lsuser(grid: Path = GRID_OPTION, user: str = USER_OPTION) -> None:
    """List users and their types."""
    for name, kind in _open(grid, user).list_users():
        typer.echo(f"{name}\t{kind}")


@app.command()
@_handle_errors
def chmod(
    level: str = typer.Argument(..., help="null, read_metadata, read, write/modify, own."),
    target_user: str = typer.Argument(..., metavar="USER", help="User (or 'public') to grant to."),
    path: str = typer.Argument(..., help="Logical path."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also everything under a collection."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Set an access level, as ichmod (the owner or a rodsadmin may)."""
    try:
        lvl = AccessLevel.from_irods(level)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    g = _open(grid, user)
    g.set_acl(lvl, target_user, _absolute(g, path), recursive=recursive)


def _pick_resource(g: LocalGrid, resource: str | None) -> str:
    if resource:
        return resource
    names = [r.name for r in g.list_resources()]
    if len(names) == 1:
        return names[0]
    raise GridError(
        "say which resource to put to with -R NAME; resources: " + (", ".join(names) or "none (create one with mkresc)")
    )


@app.command()
@_handle_errors
def put(
    local: Path = typer.Argument(..., help="Local file (or directory with -r)."),
    logical: str = typer.Argument(..., help="Logical path of the data object (or collection with -r)."),
    resource: Optional[str] = typer.Option(None, "-R", "--resource", help="Target resource (needed if several)."),
    force: bool = typer.Option(False, "-f", "--force", help="Overwrite an existing data object."),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Put a directory tree into a collection."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Upload a file (or a directory tree with -r), as iput."""
    g = _open(grid, user)
    resc = _pick_resource(g, resource)
    target = _absolute(g, logical)
    if recursive:
        made = g.put_tree(local, target, resc, overwrite=force)
        typer.echo(f"put {len(made)} files into {target} on {resc}")
    else:
        if local.is_dir():
            raise GridError(f"{local} is a directory; use -r to put a tree")
        if g.collection_exists(target):
            target = posixpath.join(target, local.name)
        obj = g.put_file(local, target, resc, overwrite=force)
        typer.echo(f"put {obj.path} ({obj.size} bytes) on {resc}")


@app.command()
@_handle_errors
def repl(
    path: str = typer.Argument(..., help="Logical path of a data object."),
    resource: str = typer.Option(..., "-R", "--resource", help="Resource to replicate to."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Replicate a data object to a resource, as irepl."""
    g = _open(grid, user)
    g.replicate(_absolute(g, path), resource)


@app.command()
@_handle_errors
def cat(
    path: str = typer.Argument(..., help="Logical path of a data object."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Print a (small) data object, as iget PATH -."""
    g = _open(grid, user)
    typer.echo(g.read_data_object(_absolute(g, path)).decode("utf-8", errors="replace"), nl=False)


@app.command()
@_handle_errors
def mkdir(
    path: str = typer.Argument(..., help="Logical path of the collection (parents are created)."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """Create a collection and its missing parents, as imkdir -p."""
    g = _open(grid, user)
    g.create_collection(_absolute(g, path))


@app.command()
@_handle_errors
def ls(
    collection: Optional[str] = typer.Argument(None, help="Collection (default: your home)."),
    long: bool = typer.Option(False, "-l", "--long", help="Show replicas: number, resource, status, checksum, file."),
    grid: Path = GRID_OPTION,
    user: str = USER_OPTION,
) -> None:
    """List a collection, as ils (-l shows replicas)."""
    g = _open(grid, user)
    coll = _absolute(g, collection) if collection else g.home()
    if g.data_object_exists(coll):
        objects = [g.get_data_object(coll)]
        subcollections: list[str] = []
    else:
        objects = g.list_data_objects(coll)
        subcollections = g.list_collections(coll)
        typer.echo(f"{coll}:")
    for obj in objects:
        if not long:
            typer.echo(f"  {obj.name}")
            continue
        typer.echo(f"  {obj.name}  {obj.size} bytes  {obj.checksum}")
        for r in obj.replicas:
            status = "&" if r.good else "X"
            typer.echo(f"      {r.number} {r.resource_name} {status} {r.size} {r.physical_path}")
    for sub in subcollections:
        typer.echo(f"  C- {sub}")


@app.command()
@_handle_errors
def lsresc(grid: Path = GRID_OPTION, user: str = USER_OPTION) -> None:
    """List resources with host, vault and AVUs."""
    for r in _open(grid, user).list_resources():
        typer.echo(f"{r.name}  host={r.host}  vault={r.vault_path}")
        for a in r.avus:
            typer.echo(f"    {a.attribute} = {a.value}" + (f" [{a.units}]" if a.units else ""))


# --- meta -----------------------------------------------------------------------------------------
def _entity(d: bool, c: bool, r: bool, u: bool) -> EntityType:
    chosen = [t for flag, t in ((d, EntityType.DATA_OBJECT), (c, EntityType.COLLECTION),
                               (r, EntityType.RESOURCE), (u, EntityType.USER)) if flag]
    if len(chosen) != 1:
        raise GridError("give exactly one of -d (data object), -C (collection), -R (resource), -u (user)")
    return chosen[0]


def _entity_name(g: LocalGrid, entity: EntityType, name: str) -> str:
    if entity in (EntityType.DATA_OBJECT, EntityType.COLLECTION):
        return _absolute(g, name)
    return name


D_OPT = typer.Option(False, "-d", help="NAME is a data object.")
C_OPT = typer.Option(False, "-C", help="NAME is a collection.")
R_OPT = typer.Option(False, "-R", help="NAME is a resource.")
U_OPT = typer.Option(False, "-u", help="NAME is a user.")
META_USER_OPTION = typer.Option(ADMIN_USER, "--user", envvar="C2D_USER", help="Act as this user (env C2D_USER).")


def _meta(op: str, d: bool, c: bool, r: bool, u: bool, name: str, attribute: str, value: str,
          units: str, grid: Path, user: str) -> None:
    g = _open(grid, user)
    entity = _entity(d, c, r, u)
    target = _entity_name(g, entity, name)
    avu = AVU(attribute, value, units)
    if op == "set":
        g.set_avus(entity, target, [avu])
    elif op == "add":  # imeta add: refused when the entity carries the AVU already
        g.add_avu(entity, target, avu)
    else:  # imeta rm: refused when it is not there
        g.remove_avu(entity, target, avu)


@meta_app.command("add")
@_handle_errors
def meta_add(
    name: str = typer.Argument(...), attribute: str = typer.Argument(...), value: str = typer.Argument(...),
    units: str = typer.Argument(""), d: bool = D_OPT, c: bool = C_OPT, r: bool = R_OPT, u: bool = U_OPT,
    grid: Path = GRID_OPTION, user: str = META_USER_OPTION,
) -> None:
    """Add an AVU (error if that exact AVU is already there)."""
    _meta("add", d, c, r, u, name, attribute, value, units, grid, user)


@meta_app.command("set")
@_handle_errors
def meta_set(
    name: str = typer.Argument(...), attribute: str = typer.Argument(...), value: str = typer.Argument(...),
    units: str = typer.Argument(""), d: bool = D_OPT, c: bool = C_OPT, r: bool = R_OPT, u: bool = U_OPT,
    grid: Path = GRID_OPTION, user: str = META_USER_OPTION,
) -> None:
    """Make this the only value of ATTR."""
    _meta("set", d, c, r, u, name, attribute, value, units, grid, user)


@meta_app.command("rm")
@_handle_errors
def meta_rm(
    name: str = typer.Argument(...), attribute: str = typer.Argument(...), value: str = typer.Argument(...),
    units: str = typer.Argument(""), d: bool = D_OPT, c: bool = C_OPT, r: bool = R_OPT, u: bool = U_OPT,
    grid: Path = GRID_OPTION, user: str = META_USER_OPTION,
) -> None:
    """Remove one AVU (error if it is not there)."""
    _meta("rm", d, c, r, u, name, attribute, value, units, grid, user)


@meta_app.command("ls")
@_handle_errors
def meta_ls(
    name: str = typer.Argument(...), d: bool = D_OPT, c: bool = C_OPT, r: bool = R_OPT, u: bool = U_OPT,
    grid: Path = GRID_OPTION, user: str = META_USER_OPTION,
) -> None:
    """List AVUs in imeta's format."""
    g = _open(grid, user)
    entity = _entity(d, c, r, u)
    target = _entity_name(g, entity, name)
    avus = g.get_avus(entity, target)
    label = {"data_object": "dataObj", "collection": "collection", "resource": "resource", "user": "user"}
    typer.echo(f"AVUs defined for {label[entity.value]} {target}:")
    if not avus:
        typer.echo("None")
    for i, a in enumerate(avus):
        if i:
            typer.echo("----")
        typer.echo(f"attribute: {a.attribute}\nvalue: {a.value}\nunits: {a.units}")

