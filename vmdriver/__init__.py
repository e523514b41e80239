"""vmvc's VM driver: the shared image booted through libvirt, timed phase by phase."""
