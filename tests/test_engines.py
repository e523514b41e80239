"""podman and Docker drive vmvc-runtime (issue 14): a table of the invocations their users
type, each run through the engine with vmvc-runtime and with runc, the reference; a row
must pass with vmvc-runtime wherever it passes with runc (here: every row, both)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.engines import IMAGE, Engine, docker, docker_answers, import_image, podman
from tests.security import facts

pytestmark = pytest.mark.slow

RUNTIMES = ("vmvc-runtime", "runc")
CAT_FIRST = "cat_first() { for f; do [ -r $f ] && { cat $f; return; }; done; echo missing; }; "


def _cgroup(name: str, v1: str, v2: str) -> str:
    """Echo NAME=<the container's own cgroup file>, v1 or v2, whichever the host has."""
    return f"echo {name}=$(cat_first /sys/fs/cgroup/{v1} /sys/fs/cgroup/{v2})"


ROWS: dict[str, tuple[list[str], str, dict[str, str] | int]] = {
    # name: (run flags, shell command, facts it prints | its exit status)
    "--rm": (["--rm"], "echo ran=yes", {"ran": "yes"}),
    "-e": (["--rm", "-e", "GREETING=hello there"], 'echo "greeting=$GREETING"',
           {"greeting": "hello there"}),
    "-w": (["--rm", "-w", "/tmp"], "echo cwd=$(pwd)", {"cwd": "/tmp"}),
    "--hostname": (["--rm", "--hostname", "vmvcbox"], "echo host=$(hostname)",
                   {"host": "vmvcbox"}),
    "--user": (["--rm", "--user", "1000:1000"], "echo uid=$(id -u); echo gid=$(id -g)",
               {"uid": "1000", "gid": "1000"}),
    "exit status": (["--rm"], "exit 7", 7),
    "--memory": (["--rm", "--memory", "32m"],
                 CAT_FIRST + _cgroup("limit", "memory/memory.limit_in_bytes", "memory.max"),
                 {"limit": str(32 << 20)}),
    "--pids-limit": (["--rm", "--pids-limit", "50"],
                     CAT_FIRST + _cgroup("pids", "pids/pids.max", "pids.max"), {"pids": "50"}),
    "--cpus": (["--rm", "--cpus", "0.5"],
               CAT_FIRST + _cgroup("quota", "cpu/cpu.cfs_quota_us", "cpu.max") + "; " +
               _cgroup("period", "cpu/cpu.cfs_period_us", "cpu.max"),
               {"quota": "50000", "period": "100000"}),
    "--read-only": (["--rm", "--read-only"],  # podman adds tmpfs on /tmp, /run; Docker not
                    "touch /x 2>/dev/null && echo root=writable || echo root=read-only; "
                    "touch /dev/shm/x && echo shm=writable", {"root": "read-only",
                                                              "shm": "writable"}),
    "--tmpfs": (["--rm", "--tmpfs", "/scratch:size=1m"],
                "echo fs=$(awk '$2 == \"/scratch\" {print $3}' /proc/mounts); "
                "touch /scratch/x && echo wrote=yes", {"fs": "tmpfs", "wrote": "yes"}),
    "-v bind": (["--rm", "-v", "{share}:/data"], "cat /data/greeting; touch /data/back",
                {"greeting": "from-host"}),
    "--cap-drop ALL --cap-add": (["--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN"],
                                 "echo eff=$(awk '/^CapEff/ {print $2}' /proc/self/status)",
                                 {"eff": "0000000000001000"}),
    "--network none": (["--rm", "--network", "none"],
                       "echo links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')",
                       {"links": "lo"}),
    "--security-opt no-new-privileges": (
        ["--rm", "--security-opt", "no-new-privileges"],
        "echo nnp=$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)", {"nnp": "1"}),
    "-t": (["--rm", "-t"], "echo tty=$(tty)", {"tty": "/dev/pts/0"}),
}


@pytest.fixture(scope="module")
def tiny_layer(tiny_image) -> Path:
    from runtime.oci_image import read_manifest

    manifest = read_manifest(tiny_image.oci_layout)
    (layer,) = manifest.layers
    return tiny_image.oci_layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]


@pytest.fixture(scope="module")
def podman_root(tiny_layer: Path, tmp_path_factory: pytest.TempPathFactory):
    """A podman store of the tests' own, the tiny image imported; removed afterwards."""
    root = tmp_path_factory.mktemp("podman")
    engine = podman(root, "runc")
    import_image(engine, tiny_layer)
    yield root
    engine("rm", "--all", "--force", "--time", "0")
    engine("rmi", "--all", "--force")
    assert engine("ps", "--all", "--quiet").stdout.split() == []


@pytest.fixture(scope="module")
def docker_image(tiny_layer: Path):
    reason = docker_answers()
    if reason is not None:
        pytest.skip(reason)
    engine = docker("runc")
    import_image(engine, tiny_layer)
    yield IMAGE
    names = engine("ps", "--all", "--quiet", "--filter", "name=vmvctest-").stdout.split()
    if names:
        engine("rm", "--force", *names)
    engine("rmi", "--force", IMAGE)


@pytest.fixture(params=["podman", "docker"])
def engines(request: pytest.FixtureRequest) -> dict[str, Engine]:
    """The engine with each runtime: {"vmvc-runtime": …, "runc": …}."""
    if request.param == "podman":
        root = request.getfixturevalue("podman_root")
        return {rt: podman(root, rt) for rt in RUNTIMES}
    request.getfixturevalue("docker_image")
    return {rt: docker(rt) for rt in RUNTIMES}


def _name() -> str:
    return f"vmvctest-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("row", list(ROWS))
def test_engine_runs_the_row_as_with_runc(row: str, engines: dict[str, Engine],
                                          tmp_path: Path) -> None:
    flags, command, expected = ROWS[row]
    share = tmp_path / "share"
    share.mkdir()
    (share / "greeting").write_text("greeting=from-host\n")
    flags = [f.replace("{share}", str(share)) for f in flags]
    for runtime in RUNTIMES:  # the reference last: a difference names ours first
        proc = engines[runtime].run("--name", _name(), *flags, IMAGE, "sh", "-c", command)
        where = f"{engines[runtime]!r} {row}: {proc.stdout!r} {proc.stderr!r}"
        if isinstance(expected, int):
            assert proc.returncode == expected, where
        else:
            assert proc.returncode == 0, where
            seen = facts(proc.stdout.replace("\r\n", "\n"))
            assert {k: seen.get(k) for k in expected} == expected, where
    if row == "-v bind":
        assert (share / "back").exists()


def _status(engine: Engine, name: str) -> str:
    return engine("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def _wait_status(engine: Engine, name: str, wanted: str, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    status = _status(engine, name)
    while status != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _status(engine, name)
    return status


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_running_container_through_the_engine(runtime: str,
                                                engines: dict[str, Engine]) -> None:
    """The verbs after `run -d`: exec (plain, with a terminal, as another user), pause and
    unpause, update, logs, stop (SIGTERM ignored by a shell as PID 1: SIGKILL after the
    grace time) and kill; then the container is removed and nothing of it is left."""
    engine = engines[runtime]
    name = _name()
    started = engine.run("-d", "--name", name, IMAGE, "sh", "-c",
                         "echo logged=yes; exec sleep 120")
    assert started.returncode == 0, started.stderr
    try:
        assert _wait_status(engine, name, "running") == "running"
        ran = engine("exec", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000", name, "sh", "-c",
                     "echo foo=$FOO cwd=$(pwd) uid=$(id -u); exit 3")
        assert ran.returncode == 3, ran.stderr
        assert facts(ran.stdout.replace(" ", "\n")) == {"foo": "bar", "cwd": "/tmp",
                                                       "uid": "1000"}
        tty = engine("exec", "-t", name, "tty")
        assert tty.returncode == 0 and tty.stdout.strip().startswith("/dev/pts/"), tty
        assert engine("pause", name).returncode == 0
        assert _status(engine, name) == "paused"
        assert engine("unpause", name).returncode == 0
        assert _status(engine, name) == "running"
        updated = engine("update", "--memory", "64m", "--memory-swap", "64m", "--cpus", "0.25",
                         name)
        assert updated.returncode == 0, updated.stderr
        limits = engine("exec", name, "sh", "-c", CAT_FIRST +
                        _cgroup("memory", "memory/memory.limit_in_bytes", "memory.max") + "; " +
                        _cgroup("quota", "cpu/cpu.cfs_quota_us", "cpu.max"))
        assert facts(limits.stdout) == {"memory": str(64 << 20), "quota": "25000"}, limits
        assert "logged=yes" in engine("logs", name).stdout
        stopped = engine("stop", "--time", "1", name)
        assert stopped.returncode == 0, stopped.stderr
        assert _wait_status(engine, name, "exited") == "exited"
        code = engine("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "137"  # the grace time passed: SIGKILL
        assert engine("start", name).returncode == 0
        assert _wait_status(engine, name, "running") == "running"
        assert engine("kill", name).returncode == 0
        assert _wait_status(engine, name, "exited") == "exited"
    finally:
        engine("rm", "--force", name)
    assert engine("ps", "--all", "--quiet", "--filter", f"name={name}").stdout.split() == []
