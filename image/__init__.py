"""The one image every backend runs: a Debian root filesystem, built once, delivered as an
OCI image layout (containers) and as an ext4 disk with a guest kernel and initramfs (VMs).

The public entry point is :func:`image.build.build_image`.
"""
