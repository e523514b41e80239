"""vmvc's built-in container runtime: namespaces, cgroups, overlayfs and the OCI formats.

Kept free of the suite's heavy dependencies (pandas, matplotlib, libvirt, pyperf): its
start-up time is one of the things vmvc measures.
"""
