"""config.json handling beside the real runs: the parsed-config cache that keeps json off
the CLI's start-up path, and refusal of what the runtime does not implement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config import load_bundle, parse_config
from runtime.errors import ContainerError
from runtime.spec import default_spec


def _bundle(tmp_path: Path, hostname: str) -> Path:
    config = default_spec(["/bin/true"])
    config["hostname"] = hostname
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_second_load_comes_from_the_cache_without_json(tmp_path: Path) -> None:
    bundle, cache = _bundle(tmp_path, "first"), tmp_path / "cache"
    assert load_bundle(bundle, str(cache)).hostname == "first"
    code = ("import sys; from runtime.config import load_bundle; "
            f"spec = load_bundle({str(bundle)!r}, {str(cache)!r}); "
            "print(spec.hostname, 'json' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["first", "False"]


def test_a_changed_config_is_read_again(tmp_path: Path) -> None:
    bundle, cache = _bundle(tmp_path, "first"), tmp_path / "cache"
    load_bundle(bundle, str(cache))
    _bundle(tmp_path, "second")
    os.utime(bundle / "config.json", ns=(1, 1))  # even with an old mtime: size/inode differ
    assert load_bundle(bundle, str(cache)).hostname == "second"


def test_an_invalid_config_is_never_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = default_spec(["/bin/true"])
    config["process"]["args"] = []
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ContainerError, match=r"process\.args"):
        load_bundle(tmp_path, str(cache))
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.parametrize(("field", "value"), [
    (("linux", "personality"), {"domain": "LINUX32"}),
    (("linux", "intelRdt"), {"closID": "x"}),
    (("process", "selinuxLabel"), "system_u:system_r:container_t"),
    (("linux", "resources", "blockIO"), {"weight": 10}),
])
def test_unimplemented_fields_are_refused_by_name(field: tuple[str, ...], value: object) -> None:
    config = default_spec(["/bin/true"])
    node = config
    for key in field[:-1]:
        node = node.setdefault(key, {})
    node[field[-1]] = value
    with pytest.raises(ContainerError, match=field[-1]):
        parse_config(config)


def test_a_terminal_needs_a_console_socket_and_a_socket_a_terminal() -> None:
    """runc's rules for create: where a terminal would go, and no socket without one."""
    from runtime import console

    with pytest.raises(ContainerError, match="--console-socket"):
        console.check(True, None)
    with pytest.raises(ContainerError, match=r"process\.terminal is false"):
        console.check(False, "/run/engine.sock")
    console.check(True, "/run/engine.sock")
    console.check(False, None)


def test_a_hugepage_size_is_named_as_the_kernel_names_it() -> None:
    config = default_spec(["/bin/true"])
    config["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2M", "limit": 1 << 21}]
    with pytest.raises(ContainerError, match=r"hugepageLimits\[0\]\.pageSize '2M'"):
        parse_config(config)
    config["linux"]["resources"]["hugepageLimits"][0]["pageSize"] = "2MB"
    assert parse_config(config).resources.hugepage_limits == [("2MB", 1 << 21)]


def test_systemd_cgroup_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Engines pass --systemd-cgroup when configured for systemd; cgroupfs is what this
    runtime drives, and it says so (and whether systemd runs here) in one line."""
    from runtime.cli import main

    assert main(["--systemd-cgroup", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--systemd-cgroup" in err and "cgroupfs" in err
