"""`edgekit publish`, `edgekit pull`, `edgekit ls`: bundles to and from a directory or an OCI registry."""
from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli import main, render

_INSECURE = click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--to", "dest", required=True, help="A directory (or file://DIR) or oci://HOST[:PORT]/REPO[:TAG] "
                                                 "(tag default: the bundle name, e.g. lite1-arm64-int8).")
@click.option("--force", is_flag=True, help="Replace a different bundle already under that name or tag.")
@_INSECURE
def publish(bundle, dest, force, insecure) -> None:
    """Publish a verified bundle to a directory or an OCI registry (idempotent, atomic)."""
    from edgekit import publish as store

    click.echo(store.publish(Path(bundle), dest, force, insecure))


@main.command()
@click.argument("ref")
@click.option("--to", "to_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Directory the bundle is placed in (as TO/<bundle name>).")
@click.option("--force", is_flag=True, help="Replace a different bundle of the same name in TO.")
@_INSECURE
def pull(ref, to_dir, force, insecure) -> None:
    """Fetch a published bundle (a directory or oci://HOST/REPO:TAG), verify every file, place it atomically."""
    from edgekit import publish as store

    click.echo(f"pulled {ref} to {store.pull(ref, Path(to_dir), force, insecure)} (every file verified)")


@main.command(name="ls")
@click.argument("dest")
@_INSECURE
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(dest, insecure, as_json) -> None:
    """List the bundles at a destination (directory or oci://HOST/REPO) with their key figures."""
    from edgekit import publish as store

    rows = store.ls(dest, insecure)
    click.echo(store.to_json(rows) if as_json else render.store_table(rows))
