"""``dma-upgrade packages``: building, uploading and listing upgrade packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from dma_upgrade.adapters.cli.backend import open_backend
from dma_upgrade.adapters.cli.context import local_only, out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.cli.tables import print_table
from dma_upgrade.adapters.packages.archive import build_package
from dma_upgrade.adapters.shapes.models import ClusterAcceptanceOut
from dma_upgrade.engine.packages import CheckName, Comparison, PackageKind, PackageManifest, PrerequisiteCheck
from dma_upgrade.engine.versions import parse_version

app = typer.Typer(no_args_is_help=True, help="Upgrade packages (.dmupgrade).")


@app.command("build")
@reports_errors
@local_only
def build(ctx: typer.Context,
          version: Annotated[str, typer.Option(help="full version with build, e.g. 10.4.9.0-14794")],
          output: Annotated[Path, typer.Option(help="folder to write the package into")] = Path("."),
          kind: Annotated[PackageKind, typer.Option(help="Full or Web")] = PackageKind.FULL,
          min_version: Annotated[str | None, typer.Option(help="prerequisite: minimum current version")] = None,
          force: Annotated[bool, typer.Option(help="overwrite a file of the same name")] = False,
          ) -> None:
    """Write a real .dmupgrade package with its manifest and prerequisite checks (an existing file of the same
    name is refused unless --force)."""
    checks = [PrerequisiteCheck(name=CheckName.DOTNET, comparison=Comparison.INCLUDES, required=("dotnet-8",))]
    if min_version is not None:
        checks.insert(0, PrerequisiteCheck(name=CheckName.MINIMUM_VERSION, comparison=Comparison.AT_LEAST,
                                           required=(min_version,)))
    manifest = PackageManifest.for_version(parse_version(version), kind, prerequisites=tuple(checks))
    out.print(str(build_package(manifest, output, overwrite=force)))


@app.command("upload")
@reports_errors
def upload(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="the .dmupgrade file")]) -> None:
    """Validate a package, store it by SHA-256 and record the upload."""
    with open_backend(ctx) as backend:
        record = backend.upload(file)
        folder = backend.location
    out.print(f"uploaded {record.file_name} as {record.sha256[:12]} ({record.size} bytes) to {folder}")


@app.command("list")
@reports_errors
def list_packages(ctx: typer.Context, output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """Every uploaded package; a package that executed an upgrade stays listed as completed."""
    with open_backend(ctx) as backend:
        packages = backend.packages()
    if wants_json(output, json_alias):
        print_json(packages)
        return
    print_table(("sha256", "file", "version", "kind", "size", "uploaded by", "status", "accepted by"),
                ((p.sha256[:12], p.file_name, p.full_version, p.kind, str(p.size), p.uploaded_by, p.status,
                  Text(acceptance(p.clusters)))
                 for p in packages))


def acceptance(clusters: list[ClusterAcceptanceOut]) -> str:
    """Which systems accepted a package on upload, one a line; those refusing it with the checks they fail."""
    if not clusters:
        return "not judged (no agent reported facts)"
    return "\n".join(f"{c.label}: accepts" if c.accepted else f"{c.label}: refuses ({'; '.join(c.refusals)})"
                     for c in clusters)
