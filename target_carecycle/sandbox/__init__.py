"""A local careCycle-compatible lead-upload API for demos, tests and benchmarks.

The target never imports this package; it exists so nobody has to point test data at a real
careCycle account (which could call or text real people).
"""

from target_carecycle.sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_SOURCE_ID,
    UPLOAD_PATH,
    RunningSandbox,
    SandboxApp,
    SandboxConfig,
    running_sandbox,
    start_sandbox,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SOURCE_ID",
    "UPLOAD_PATH",
    "RunningSandbox",
    "SandboxApp",
    "SandboxConfig",
    "running_sandbox",
    "start_sandbox",
]
