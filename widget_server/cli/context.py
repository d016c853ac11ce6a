"""Services for CLI commands, built once per invocation from the environment."""

from __future__ import annotations

from .. import runtime
from ..config import load_settings

__all__ = ["cli_runtime"]


def cli_runtime() -> runtime.Runtime:
    """The installed runtime (tests install one), else one built from the environment."""
    if runtime._current is None:
        runtime.install(runtime.build_runtime(load_settings()))
    return runtime.current()
