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
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False), default=None,
              help="Sign the bundle with this private key (edgekit keygen); pull --verify-key checks it.")
def publish(bundle, dest, force, insecure, sign_key) -> None:
    """Publish a verified bundle to a directory or an OCI registry (idempotent, atomic)."""
    from edgekit import publish as store

    click.echo(store.publish(Path(bundle), dest, force, insecure, Path(sign_key) if sign_key else None))


@main.command()
@click.argument("ref")
@click.option("--to", "to_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Directory the bundle is placed in (as TO/<bundle name>).")
@click.option("--force", is_flag=True, help="Replace a different bundle of the same name in TO.")
@_INSECURE
@click.option("--verify-key", type=click.Path(dir_okay=False), default=None,
              help="Accept only a bundle signed by this public key (KEY.pub from edgekit keygen).")
def pull(ref, to_dir, force, insecure, verify_key) -> None:
    """Fetch a published bundle (a directory or oci://HOST/REPO:TAG), verify every file, place it atomically."""
    from edgekit import publish as store

    path = store.pull(ref, Path(to_dir), force, insecure, Path(verify_key) if verify_key else None)
    click.echo(f"pulled {ref} to {path} (every file verified{', signature checked' if verify_key else ''})")


@main.command(name="ls")
@click.argument("dest")
@_INSECURE
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(dest, insecure, as_json) -> None:
    """List the bundles at a destination (directory or oci://HOST/REPO) with their key figures."""
    from edgekit import publish as store

    rows = store.ls(dest, insecure)
    click.echo(store.to_json(rows) if as_json else render.store_table(rows))


@main.command()
@click.argument("key", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
def keygen(key, force) -> None:
    """Make an Ed25519 key pair for signing bundles: KEY (private, keep it) and KEY.pub (give it to the boards)."""
    from edgekit.publish import signing

    private, public = signing.keygen(Path(key), force)
    click.echo(f"private key {private} (keep it secret: publish --sign {private})\n"
               f"public key {public} (on the board: pull --verify-key {public})")
