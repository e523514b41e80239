"""``vmvc doctor``: placeholder replaced below."""


def register(verbs) -> None:
    pass
