"""The part of Ray's API a fleet run uses, in this process: actors are plain objects, a remote
call runs when its result is fetched, and ``wait`` returns the oldest call first.

Why: the fleet's driver (:func:`lenna.measure.fleet.run_fleet_measurement`) then runs without
a cluster, deterministically, with the real actor body, so a test can compare it with a local
run row for row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ActorDied(Exception):
    """Ray's ``RayActorError``."""


class Ref:
    def __init__(self, run: Callable[[], object]) -> None:
        self.run = run


class Handle:
    """An actor: ``handle.method.remote(*args)`` returns a :class:`Ref`."""

    def __init__(self, body: object, calls: list[Ref]) -> None:
        self._body, self._calls = body, calls

    def __getattr__(self, method: str) -> Any:
        fn = getattr(self._body, method)
        calls = self._calls

        class Remote:
            @staticmethod
            def remote(*args: object) -> Ref:
                ref = Ref(lambda: fn(*args))
                calls.append(ref)
                return ref

        return Remote


class InProcessRay:
    """``slots`` device slots of ``resource``; ``killed`` lists the actors the driver ended."""

    class exceptions:
        RayActorError = ActorDied

    def __init__(self, resource: str, slots: int) -> None:
        self.resources = {resource: slots}
        self.calls: list[Ref] = []
        self.killed: list[Handle] = []

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict:
        return dict(self.resources)

    def remote(self, **options: object) -> Callable[[type], Any]:
        calls = self.calls

        class ActorClass:
            def __init__(self, cls: type) -> None:
                self.cls = cls

            def remote(self, *args: object) -> Handle:
                return Handle(self.cls(*args), calls)

        return ActorClass

    def get(self, refs: Ref | list[Ref]) -> object:
        if isinstance(refs, list):
            return [self.get(r) for r in refs]
        return refs.run()

    def wait(self, refs: list[Ref], num_returns: int = 1) -> tuple[list, list]:
        first = min(refs, key=self.calls.index)
        return [first], [r for r in refs if r is not first]

    def kill(self, actor: Handle) -> None:
        self.killed.append(actor)
