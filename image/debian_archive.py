"""Debian's archive through a private apt state: versions, dependency resolution, downloads.

The image is Debian bookworm whatever the host runs (Debian, Ubuntu, a CI runner), so the
suite never reads the host's package lists: it keeps its own apt state under the cache dir,
pointed at the Debian mirror the host already uses when the host is Debian, else at
deb.debian.org. Nothing is installed on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from image.errors import ImageError
from image.external import require_tool, run_tool

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
HOST_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: str = "main"

    def line(self) -> str:
        """The one-line sources.list entry (mmdebstrap takes these as MIRROR arguments)."""
        return f"deb [signed-by={KEYRING}] {self.uri} {self.suite} {self.components}"


def _host_source_uris() -> dict[str, str]:
    """Map suite → URI from the host's apt configuration (deb822 and one-line formats)."""
    found: dict[str, str] = {}
    files: list[Path] = []
    for place in HOST_SOURCES:
        if place.is_dir():
            files += sorted(place.glob("*.sources")) + sorted(place.glob("*.list"))
        elif place.is_file():
            files.append(place)
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (m.group(1).lower(), m.group(2).strip())
                    for m in re.finditer(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M)
                )
                if "deb" not in fields.get("types", "").split() or "uris" not in fields:
                    continue
                for suite in fields.get("suites", "").split():
                    found.setdefault(suite, fields["uris"].split()[0])
        else:
            for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
                found.setdefault(m.group(2), m.group(1))
    return found


def debian_sources(suite: str = "bookworm", mirror: str | None = None) -> list[AptSource]:
    """The sources the image is built from.

    An explicit *mirror* is used alone. Otherwise the host's own Debian mirror for *suite*
    (with its -updates and -security companions) when the host has one, else deb.debian.org.
    """
    if mirror:
        return [AptSource(mirror.rstrip("/"), suite)]
    host = _host_source_uris()
    main = host.get(suite, DEFAULT_MIRROR)
    return [
        AptSource(main, suite),
        AptSource(host.get(f"{suite}-updates", main), f"{suite}-updates"),
        AptSource(host.get(f"{suite}-security", DEFAULT_SECURITY), f"{suite}-security"),
    ]


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and status under *state_dir*."""

    def __init__(self, state_dir: Path, sources: list[AptSource], debs_dir: Path) -> None:
        self.sources = sources
        key = hashlib.sha256("\n".join(s.line() for s in sources).encode()).hexdigest()[:16]
        self.dir = state_dir / key
        self.debs_dir = debs_dir

    def _options(self) -> list[str]:
        d = self.dir
        opts = {
            "Dir::Etc::SourceList": d / "sources.list",
            "Dir::Etc::SourceParts": d / "empty",
            "Dir::Etc::Preferences": d / "empty" / "preferences",
            "Dir::Etc::PreferencesParts": d / "empty",
            "Dir::State": d / "state",
            "Dir::State::Lists": d / "lists",
            "Dir::State::status": d / "status",
            "Dir::Cache": d / "cache",
            "Dir::Cache::Archives": self.debs_dir,
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "APT::Install-Recommends": "false",  # as mmdebstrap installs
            "Acquire::Languages": "none",
            "Debug::NoLocking": "true",
            "APT::Sandbox::User": "root",
        }
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def _prepare(self) -> None:
        for sub in ("empty", "state", "lists/partial", "cache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.debs_dir / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "status").touch()
        (self.dir / "sources.list").write_text("".join(s.line() + "\n" for s in self.sources))

    def update(self, max_age: float) -> str | None:
        """Refresh the package lists when older than *max_age* seconds (0: always).

        With the mirror unreachable but lists from an earlier refresh at hand, carry on with
        those (a cached image may still match them) and return a warning; else fail.
        """
        require_tool("apt-get", "apt")
        if not KEYRING.exists():
            raise ImageError(f"{KEYRING} missing: install debian-archive-keyring (make setup)")
        self._prepare()
        stamp = self.dir / "updated"
        if stamp.exists() and time.time() - stamp.stat().st_mtime < max_age:
            return None
        out = run_tool(["apt-get", *self._options(), "-q", "update"], "apt-get update",
                       space_check=self.dir)
        failed = [line for line in out.splitlines() if line.startswith(("Err:", "W:", "E:"))]
        if failed or not any((self.dir / "lists").glob("*Packages*")):
            uris = ", ".join(sorted({s.uri for s in self.sources}))
            detail = failed[0] if failed else "no package lists"
            if stamp.exists() and any((self.dir / "lists").glob("*Packages*")):
                return f"cannot reach the Debian mirror {uris}; using the package lists of " \
                       f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(stamp.stat().st_mtime))}"
            raise ImageError(f"cannot reach the Debian mirror {uris}: {detail}")
        stamp.touch()
        return None

    def lists_fingerprint(self) -> str:
        """SHA-256 over the release files and the index files' sizes and times: it changes
        whenever any version can (mirrors without InRelease included)."""
        h = hashlib.sha256()
        for path in sorted((self.dir / "lists").iterdir()):
            if not path.is_file() or path.name == "lock":
                continue
            if path.name.endswith("Release"):
                h.update(path.name.encode() + b"\0" + path.read_bytes())
            else:
                st = path.stat()
                h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def resolve(self, packages: list[str], essential: bool) -> dict[str, str]:
        """Package → version for *packages* and their dependencies (plus Essential:yes ones).

        This is the set an mmdebstrap of the same sources installs; it keys the image cache.
        apt takes seconds to answer, so the answer is kept per release-file fingerprint.
        """
        # Essential:yes packages, as mmdebstrap's essential variant takes them; libapt also
        # counts apt itself as essential, which that variant does not install.
        essential_set = "?and(?essential,?not(?exact-name(apt)))"
        wanted = ([essential_set] if essential else []) + sorted(packages)
        memo_key = json.dumps([self.lists_fingerprint(), self._options(), wanted])
        memo = self.dir / "resolved" / (hashlib.sha256(memo_key.encode()).hexdigest() + ".json")
        if memo.exists():
            return json.loads(memo.read_text())
        self.check_known(packages)
        out = run_tool(["apt-get", *self._options(), "-s", "-q", "install", *wanted],
                       "resolving packages")
        found = dict(re.findall(r"^Inst (\S+) \((\S+)", out, re.M))
        if not found:
            raise ImageError(f"resolving packages {' '.join(wanted)} gave nothing to install")
        memo.parent.mkdir(exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(found))
        tmp.rename(memo)
        return found

    def check_known(self, packages: list[str]) -> None:
        """Fail with the names of any *packages* the archive does not have."""
        out = run_tool(["apt-cache", *self._options(), "policy", *packages], "apt-cache policy")
        unknown = [p for p in packages if not re.search(
            rf"^{re.escape(p)}:\n\s+Installed: \S+\n\s+Candidate: (?!\(none\))", out, re.M)]
        if unknown:
            raise ImageError(f"unknown package: {', '.join(unknown)} (not in {self.sources[0].uri}"
                            f" {self.sources[0].suite})")

    def download(self, package: str, version: str) -> Path:
        """The .deb of *package* at *version*, downloaded once into the debs cache."""
        name = f"{package}_{version.replace(':', '%3a')}_"
        for existing in self.debs_dir.glob(name + "*.deb"):
            return existing
        run_tool(["apt-get", *self._options(), "-q", "download", f"{package}={version}"],
                 f"downloading {package}", cwd=self.debs_dir, space_check=self.debs_dir)
        for fetched in self.debs_dir.glob(name + "*.deb"):
            return fetched
        raise ImageError(f"downloading {package}: apt-get reported success but no .deb appeared")
