"""``vmvc image build|verify|list``: the one image every backend runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.errors import VmvcError
from image import cache
from image.build import PROFILES, build_image, cached_images, superseded_images
from image.fs_cleanup import remove_tree
from image.progress import StepProgress
from paths import image_cache_dir


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("image", help="build and check the shared image")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="build (or find cached) the image artifacts")
    build.add_argument("--profile", choices=PROFILES, default="full",
                       help="full: Debian with the workload tools; tiny: busybox only")
    build.add_argument("--package", action="append", default=[], metavar="PKG",
                       help="an extra Debian package for workloads (repeatable)")
    build.add_argument("--mirror",
                       help="Debian mirror URL (default: the host's, else deb.debian.org)")
    build.add_argument("--refresh", action="store_true", help="refresh the package index now")
    _cache_option(build)
    build.add_argument("--json", action="store_true", help="print the artifacts as JSON")
    build.set_defaults(handler=run_build)

    prune = actions.add_parser("prune", help="remove entries superseded by newer builds")
    _cache_option(prune)
    prune.set_defaults(handler=run_prune)

    verify = actions.add_parser("verify", help="check every cached entry against its hashes")
    _cache_option(verify)
    verify.set_defaults(handler=run_verify)


def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache directory (default: $VMVC_CACHE_DIR or ~/.cache/vmvc)")


def run_build(args: argparse.Namespace) -> int:
    progress = StepProgress(quiet=False)
    artifacts = build_image(args.profile, args.cache_dir, args.package, args.mirror,
                            args.refresh, progress)
    if args.json:
        print(json.dumps(artifacts.contract(), indent=2))
    else:
        for key, value in artifacts.contract().items():
            print(f"{key:11} {value}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    entries = cached_images(args.cache_dir)
    if not entries:
        where = args.cache_dir or image_cache_dir()
        raise VmvcError(f"no image in {where}: run vmvc image build")
    bad = 0
    for entry in entries:
        problem = cache.corruption(entry)
        bad += problem is not None
        print(f"{entry.name}: {problem or 'ok'}")
    return 1 if bad else 0


def run_prune(args: argparse.Namespace) -> int:
    cache_dir = args.cache_dir or image_cache_dir()
    if not cache_dir.is_dir():
        raise VmvcError(f"no image cache at {cache_dir}")
    freed = 0
    with cache.cache_lock(cache_dir):
        for entry in superseded_images(cache_dir):
            size = sum(p.stat().st_blocks * 512 for p in entry.rglob("*") if p.is_file())
            remove_tree(entry)
            freed += size
            print(f"removed {entry.name} ({size / 2**20:.0f} MiB)")
    print(f"freed {freed / 2**20:.0f} MiB")
    return 0
