"""The upgrade-path advisor's bodies: the chain of versions to install and the packages covering each hop."""

from __future__ import annotations

from pydantic import Field

from dma_upgrade.adapters.shapes.models import Shape
from dma_upgrade.engine.path_advice import HopAdvice, PathAdvice
from dma_upgrade.engine.records import PackageRecord


class CoveringPackageOut(Shape):
    """An uploaded Full package that installs a version the hop accepts."""

    sha256: str
    file_name: str
    version: str
    status: str

    @classmethod
    def of(cls, package: PackageRecord) -> CoveringPackageOut:
        return cls(sha256=package.sha256, file_name=package.file_name,
                   version=str(package.manifest.dataminer_version), status=package.status)


class HopOut(Shape):
    """One version to install: any version from ``lowest`` up to (not including) ``below``, as ``versions`` says."""

    versions: str
    lowest: str
    below: str
    rules: list[str] = Field(description="the documented rules that make it a step (none for the target)")
    packages: list[CoveringPackageOut]

    @classmethod
    def of(cls, advice: HopAdvice) -> HopOut:
        versions = advice.hop.versions
        return cls(versions=versions.label, lowest=str(versions.low), below=str(versions.high),
                   rules=list(advice.hop.rules), packages=[CoveringPackageOut.of(p) for p in advice.packages])


class PathOut(Shape):
    """The way from one current version (run by ``agents``) to the target: ``hops`` in order, or ``refused``."""

    agents: list[str]
    current: str
    target: str
    direct: bool
    refused: str | None
    hops: list[HopOut]

    @classmethod
    def of(cls, advice: PathAdvice) -> PathOut:
        path = advice.path
        return cls(agents=list(advice.agents), current=str(path.current), target=str(path.target),
                   direct=path.direct, refused=path.refused, hops=[HopOut.of(hop) for hop in advice.hops])
