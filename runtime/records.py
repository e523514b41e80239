"""Plain records for the runtime's data: fields declared as annotations, defaults as class
attributes. Not dataclasses: building those costs about a millisecond per class at import,
and the runtime's start-up is one of the things vmvc measures."""

from __future__ import annotations

from types import SimpleNamespace


class Record(SimpleNamespace):
    def __init__(self, *args: object, **fields: object) -> None:
        names = list(self.__annotations__)
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}: too many values")
        values = dict(zip(names, args, strict=False))
        values.update(fields)
        for name in names:
            if name not in values:
                if not hasattr(type(self), name):
                    raise TypeError(f"{type(self).__name__}: {name} is required")
                default = getattr(type(self), name)
                values[name] = type(default)(default) if isinstance(default, list | dict) \
                    else default
        super().__init__(**values)

    def replace(self, **changes: object) -> Record:
        return type(self)(**{**vars(self), **changes})
