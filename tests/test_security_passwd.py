"""Issue 11, item 9: resolving process.user.username reads the image's /etc/passwd and
/etc/group on the host; a FIFO (or any other non-regular file) there must not hang
``create``: it fails at once with one line naming the file, and nothing is left."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.oci_runtime import BUILTIN, OciRuntime, make_config, new_id, write_bundle

pytestmark = pytest.mark.skipif(not BUILTIN, reason="process.user.username is vmvc-runtime's "
                                "extension (a Windows field in the OCI spec); runc and crun "
                                "take numeric ids")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nbench:x:101:101::/home/bench:/bin/sh\n"
GROUP = "root:x:0:\nbench:x:101:\nextra:x:102:bench\n"


@pytest.mark.parametrize("fifo", ["passwd", "group"])
def test_fifo_account_file_fails_fast(fifo: str, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        if name == fifo:
            os.mkfifo(rootfs / "etc" / name)  # no writer, ever: a blocking open waits forever
        else:
            (rootfs / "etc" / name).write_text(text)
    config = make_config(rootfs, ["/bin/true"])
    config["process"]["user"] = {"uid": 0, "gid": 0, "username": "bench"}
    runtime, cid = OciRuntime(tmp_path / "state"), new_id()
    started = time.monotonic()
    created = runtime("create", "--bundle", str(write_bundle(tmp_path / "b", config)), cid,
                      timeout=20)
    assert time.monotonic() - started < 10
    assert created.returncode != 0
    assert created.stderr.strip().count("\n") == 0, created.stderr
    assert f"/etc/{fifo} is not a regular file" in created.stderr
    assert "process.user.username" in created.stderr
    assert runtime("list").stdout.split("\n")[1:] in ([], [""])
    assert [p for p in (tmp_path / "state").iterdir() if not p.name.startswith(".")] == []


def test_regular_account_files_still_resolve(busybox_rootfs: Path, tmp_path: Path) -> None:
    """The same reading, on a real image's files: root's ids come back."""
    from runtime.config import parse_config
    from runtime.container import _resolve_username

    config = make_config(busybox_rootfs, ["/bin/true"])
    config["process"]["user"] = {"uid": 5, "gid": 5, "username": "root"}
    spec = parse_config(config)
    _resolve_username(spec, str(busybox_rootfs))
    assert (spec.uid, spec.gid) == (0, 0)
