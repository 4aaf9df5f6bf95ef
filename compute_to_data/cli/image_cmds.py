"""Sub-commands ``c2d image ...``: build and list the classifier container image.

For administrators of a compute host: the image tasks run in is built here, from this
checkout, without network (see ``compute_to_data.images``), and must then be listed in
``allowed_images`` of the server settings before any task may use it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.settings import Settings

app = typer.Typer(help="Build and list the classifier container image.", no_args_is_help=True)


@app.command("build")
def build(
    base: Optional[str] = typer.Option(
        None, "--base", help="Base image with python3 3.11 (default: python:3.11-slim if present, "
        "else c2d/bookworm-python:local made by scripts/docker-env)."),
    wheelhouse: Optional[Path] = typer.Option(
        None, "--wheelhouse", help="Directory of wheels for the image (built with pip if missing or outdated; "
        "default <cache>/wheelhouse, shared with scripts/docker-env; <cache>/wheelhouse-cuda with --cuda)."),
    tag: Optional[str] = typer.Option(
        None, "--tag", help="Image tag (default compute-to-data/classifier:<version>, "
        "compute-to-data/classifier-cuda:<version> with --cuda)."),
    cuda: bool = typer.Option(
        False, "--cuda", help="Build the CUDA twin for GPU hosts: the wheelhouse must hold a CUDA build of torch "
        "and its nvidia-* wheels (about 3 GB; a 5.8 GB image); set it as gpu_image in the server settings."),
    if_stale: bool = typer.Option(False, "--if-stale", help="Do nothing when the image is up to date."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not show the docker build output."),
) -> None:
    """Build and tag the classifier image (or with --cuda its CUDA twin); print its id and size."""
    from compute_to_data import images

    if not quiet:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        images.log.addHandler(handler)
        images.log.setLevel(logging.INFO)
    try:
        # the CUDA build's layers (5.5 GB) are committed for minutes without a word from the daemon
        client = images.docker_client(timeout=1800 if cuda else 600)
        chosen_base = base or images.choose_base_image(client)
        built = images.build_image(
            base_image=chosen_base,
            wheelhouse=wheelhouse or images.default_wheelhouse(cuda=cuda),
            tag=tag,
            if_stale=if_stale,
            client=client,
            cuda=cuda,
        )
    except ComputeToDataError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    verb = "up to date" if built.reused else f"built in {built.seconds:.0f} s"
    typer.echo(f"{built.tag}: {verb}")
    typer.echo(f"  image id: {built.id}")
    typer.echo(f"  size:     {built.size / 1e6:.0f} MB")
    typer.echo(f"  base:     {built.base_image}")
    allowed = _allowed_names()
    if allowed is not None and built.tag not in allowed:
        typer.echo(f"  note: {built.tag} is not in allowed_images of the server settings yet; tasks cannot use it")
    if cuda:
        typer.echo("  note: name it gpu_image in the server settings to run it on resources with COMPUTE_RESOURCE_GPUS")


@app.command("ls")
def list_images() -> None:
    """Classifier images on this host, and whether the server settings allow them."""
    from compute_to_data import images

    try:
        rows = images.list_images()
    except ComputeToDataError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    if not rows:
        typer.echo("no compute_to_data images on this host; build one with: c2d image build")
        return
    allowed = _allowed_names()
    typer.echo(f"{'TAG':<45} {'IMAGE ID':<19} {'SIZE':>8}  {'ALLOWED':<7}  {'TORCH':<5}  BASE")
    for row in rows:
        for tag in row["tags"] or ["<none>"]:
            ok = "?" if allowed is None else ("yes" if tag in allowed else "no")
            typer.echo(f"{tag:<45} {row['id'][7:19]:<19} {row['size'] / 1e6:>5.0f} MB  {ok:<7}  "
                       f"{row['variant']:<5}  {row['base']}")


def _allowed_names() -> set[str] | None:
    try:
        return {a.name for a in Settings.load().allowed_images}
    except ComputeToDataError:
        return None
