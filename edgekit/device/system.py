"""What machine this is: one CPU probe for the build record and the bench report (numpy-free, no runtime needed)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (x86 `model name`; some Arm kernels say `Hardware`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":")[0].strip().lower()
            if key in ("model name", "hardware", "cpu model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a build ran on, as its manifest records it."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(), "os": platform.platform()}


def device_info(runtime: str) -> dict:
    """The device a bench ran on, with the runtime that ran the bundle."""
    from edgekit.device.runtimes import runtime_version

    package, rt_version = runtime_version(runtime)
    return {**machine(), "python": platform.python_version(), "runtime": runtime, "runtime_package": package,
            "runtime_version": rt_version, "hostname": platform.node()}
