"""Making a dependency fail once, for tests of what a request leaves behind when it crashes midway."""

from __future__ import annotations

from typing import Any


def fail_first_call(monkeypatch: Any, owner: object, name: str, error: Exception) -> None:
    """`owner.name` raises `error` on its first call and behaves as before afterwards."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
