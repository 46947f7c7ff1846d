"""recbench: an open benchmark harness for LLM-based recommendation.

Plugins implement hooks with :data:`hookimpl`; see ``recbench.hookspecs`` for the hooks.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("recbench")

__all__ = ["__version__", "hookimpl"]
