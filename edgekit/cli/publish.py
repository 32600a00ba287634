"""`edgekit publish`, `edgekit pull`, `edgekit ls`: bundles to and from a directory or an OCI registry."""
from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli import render
from edgekit.cli.app import main

_INSECURE = click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--to", "dest", required=True, help="A directory (or file://DIR) or oci://HOST[:PORT]/REPO[:TAG] "
                                                 "(tag default: the bundle name, e.g. lite1-arm64-int8).")
@click.option("--force", is_flag=True, help="Replace a different bundle already under that name or tag.")
@_INSECURE
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False), default=None,
              help="Sign the bundle with this private key (edgekit keygen); pull --verify-key checks it.")
@click.option("--bench", "bench_sources", multiple=True, metavar="FILE.json|history",
              help="Attach bench reports of this build: a report or fleet JSON (bench --json), or 'history' (the "
                   "latest run per device in the bench history). Repeatable; a bundle already published is not "
                   "uploaded again.")
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              help="With --bench history: the history file [default: $EDGEKIT_HISTORY or "
                   "~/.local/share/edgekit/history.jsonl].")
def publish(bundle, dest, force, insecure, sign_key, bench_sources, history) -> None:
    """Publish a verified bundle to a directory or an OCI registry (idempotent, atomic), with its bench reports."""
    from edgekit import publish as store

    runs = None
    if bench_sources:  # reports of another build are refused before anything is uploaded
        from edgekit.core import bundle as manifest
        from edgekit.publish import reports

        m = manifest.read(Path(bundle), verify=False)  # publish verifies every file next
        runs = reports.collect(manifest.file_sha256(Path(bundle) / manifest.MANIFEST), m["name"],
                               list(bench_sources), Path(history) if history else None)
    click.echo(store.publish(Path(bundle), dest, force, insecure, Path(sign_key) if sign_key else None))
    if runs is not None:
        click.echo(store.attach(Path(bundle), dest, runs, insecure))


@main.command()
@click.argument("ref")
@click.option("--to", "to_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Directory the bundle is placed in (as TO/<bundle name>).")
@click.option("--force", is_flag=True, help="Replace a different bundle of the same name in TO.")
@_INSECURE
@click.option("--verify-key", type=click.Path(dir_okay=False), default=None,
              help="Accept only a bundle signed by this public key (KEY.pub from edgekit keygen), for the name asked "
                   "for, and no older than the last one verified into --to under that name.")
@click.option("--allow-downgrade", is_flag=True,
              help="With --verify-key: accept a signed build older than the one verified into --to before.")
def pull(ref, to_dir, force, insecure, verify_key, allow_downgrade) -> None:
    """Fetch a published bundle (a directory or oci://HOST/REPO:TAG), verify every file, place it atomically."""
    from edgekit import publish as store
    from edgekit.publish import reports

    path = store.pull(ref, Path(to_dir), force, insecure, Path(verify_key) if verify_key else None, allow_downgrade)
    runs = reports.dir_of(path)
    count = len(list(runs.glob("*.json"))) if runs.is_dir() else 0
    click.echo(f"pulled {ref} to {path} (every file verified{', signature checked' if verify_key else ''})"
               + (f"; {count} bench report(s) in {runs}" + (" (checked against their digests and this build, "
                  "not signed)" if verify_key else "") if count else ""))


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
               f"public key {public} (on the board: pull --verify-key {public}); key id "
               f"{signing.public_key_id(public)}, the signer `edgekit ls` shows")
