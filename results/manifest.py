"""``manifest.json`` as types: what a run was measured on and under (host, versions, image,
accelerator, settings), what each backend and workload was, and what failed and why.
:meth:`Manifest.from_json` and :meth:`Manifest.to_json` keep the file's JSON exactly as it
has been (``accelerator.accelerator`` included): only the Python side is typed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from results.errors import ResultsError

FORMAT = "vmvc-run/1"


def _build(cls: type, data: Any, where: str) -> Any:
    """*cls* from its JSON object; a missing or unknown key is one line naming it."""
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: expected an object, found {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ResultsError(f"{where}: unknown key {unknown[0]!r}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ResultsError(f"{where}: {exc}") from exc


@dataclass
class Host:
    hostname: str
    kernel: str
    os: str
    cpu_model: str
    cpu_count: int | None
    memory_bytes: int
    cgroup_layout: str


@dataclass
class Image:
    profile: str
    digest: str
    entry: str


@dataclass
class Accelerator:
    """How the run's VMs were accelerated (``kvm`` or ``tcg``), said for a reader, and how
    that was decided."""

    name: str
    label: str
    how: str

    @classmethod
    def decided(cls, name: str, how: str) -> Accelerator:
        return cls(name, "kvm" if name == "kvm"
                   else "tcg (emulated: VM figures are not those of a KVM host)", how)

    def as_json(self) -> dict:
        return {"accelerator": self.name, "label": self.label, "how": self.how}


@dataclass
class Settings:
    """What the run was asked for (``vmvc run``'s options, defaults filled in), and the
    suite's counts they came to."""

    suite: str
    backends: list[str]
    workloads: list[str]
    repeat: int
    image: str
    cpus: float | None
    memory_mib: int | None
    density_max: int | None
    vm_boots: int | None
    vm_memory_mib: int
    vm_vcpus: int
    suite_counts: dict[str, Any]
    burst_max: int | None = None  # written only when given: older runs have no such key
    metrics: list[str] | None = None  # likewise; None: every metric

    def as_json(self) -> dict:
        data = asdict(self)
        for optional in ("burst_max", "metrics"):
            if data[optional] is None:
                del data[optional]
        return data


@dataclass
class HostCheck:
    name: str
    ok: bool
    detail: str
    fix: str
    needed_by: list[str]


@dataclass
class BackendStatus:
    status: str  # ok | skipped
    kind: str  # host | container | vm
    reason: str | None = None

    def as_json(self) -> dict:
        return {"status": self.status, "kind": self.kind,
                **({"reason": self.reason} if self.reason else {})}


@dataclass
class WorkloadFacts:
    description: str
    command: str | list[str]
    setup: str | list[str]
    unit: str
    better: str  # higher | lower
    figure: str
    source: str
    params: dict[str, Any]
    host_command: str | list[str] | None = None  # a service's client, run on the host
    figures: dict[str, dict[str, str]] | None = None  # several: name → kind, unit, better

    def measured(self) -> tuple:
        """What makes two runs of a workload the same measurement (not its file or wording)."""
        return (self.command, self.params, self.setup, self.figure, self.unit, self.better,
                self.figures)  # host_command: recorded, not compared (older runs lack it)

    def as_json(self) -> dict:
        """The optional keys only when set: a run without them reads back byte for byte."""
        return {k: v for k, v in asdict(self).items()
                if v is not None or k not in ("host_command", "figures")}


@dataclass
class Failure:
    benchmark: str
    round: int
    reason: str
    log: str


@dataclass
class NotApplicable:
    benchmark: str
    reason: str


@dataclass
class Manifest:
    created: str
    updated: str
    status: str  # running | interrupted | complete | complete with failures
    settings: Settings
    image: Image
    accelerator: Accelerator
    host: Host
    checks: list[HostCheck]
    versions: dict[str, str]
    backends: dict[str, BackendStatus]
    workloads: dict[str, WorkloadFacts]
    definitions: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    not_applicable: list[NotApplicable] = field(default_factory=list)
    format: str = FORMAT

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> Manifest:
        """The manifest in *data* (parsed JSON); *where* names the file in errors."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise ResultsError(f"{where}: format {found!r}, expected {FORMAT!r}")
        try:
            accelerator = dict(data["accelerator"])
            accelerator["name"] = accelerator.pop("accelerator")
            parts = {
                "settings": _build(Settings, data["settings"], f"{where}: settings"),
                "image": _build(Image, data["image"], f"{where}: image"),
                "accelerator": _build(Accelerator, accelerator, f"{where}: accelerator"),
                "host": _build(Host, data["host"], f"{where}: host"),
                "checks": [_build(HostCheck, c, f"{where}: checks") for c in data["checks"]],
                "backends": {k: _build(BackendStatus, v, f"{where}: backends.{k}")
                             for k, v in data["backends"].items()},
                "workloads": {k: _build(WorkloadFacts, v, f"{where}: workloads.{k}")
                              for k, v in data["workloads"].items()},
                "failures": [_build(Failure, f, f"{where}: failures")
                             for f in data.get("failures", [])],
                "not_applicable": [_build(NotApplicable, n, f"{where}: not_applicable")
                                   for n in data.get("not_applicable", [])],
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResultsError(f"{where}: missing or malformed {exc}") from exc
        plain = {k: data[k] for k in ("created", "updated", "status", "versions")
                 if k in data}
        extra = {k: data[k] for k in ("definitions", "ratios") if k in data}
        return _build(cls, {**plain, **extra, **parts, "format": FORMAT}, where)

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "settings": self.settings.as_json(), "image": asdict(self.image),
                "accelerator": self.accelerator.as_json(), "host": asdict(self.host),
                "checks": [asdict(c) for c in self.checks],
                "backends": {k: v.as_json() for k, v in self.backends.items()},
                "workloads": {k: v.as_json() for k, v in self.workloads.items()},
                "failures": [asdict(f) for f in self.failures],
                "not_applicable": [asdict(n) for n in self.not_applicable]}
