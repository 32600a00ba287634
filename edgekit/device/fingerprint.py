"""The device fingerprint: what decides INT8 speed on this board, and whether a run's figures can be compared.

Every probe reads plain files under one root (`EDGEKIT_SYSROOT`, default `/`), so tests point it at fixture trees of
a Raspberry Pi 4, a Pi 5 and x86 boxes. Nothing here needs a runtime, numpy or root rights.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SYSROOT_ENV = "EDGEKIT_SYSROOT"

# Arm CPU parts (MIDR part numbers, implementer 0x41) seen on boards people ship to.
ARM_PARTS = {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57",
             0xd08: "Cortex-A72", 0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76",
             0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
             0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710", 0xd48: "Cortex-X2",
             0xd49: "Neoverse-N2", 0xd4f: "Neoverse-V2"}
# The instructions int8 kernels are built on: Arm's dot product (SDOT/UDOT) and int8 matrix multiply; x86's VNNI
# (AVX-512 or AVX) and AMX tiles. AVX2 alone has only the slower multiply-add pairs.
INT8_FEATURES = {"arm": {"asimddp": "asimddp", "i8mm": "i8mm"},
                 "x86": {"avx2": "avx2", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni", "amx": "amx_int8"}}
FAST_INT8 = {"arm": ("asimddp", "i8mm"), "x86": ("avx512_vnni", "avx_vnni", "amx")}
# Raspberry Pi firmware's throttled flags (vcgencmd get_throttled): bits 0-3 now, bits 16-19 since boot.
THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit"}
PI_SOFT_LIMIT_C = 80.0  # Pi 4 and Pi 5 firmware start throttling the ARM cores at 80 degrees C


def sysroot() -> Path:
    root = Path(os.environ.get(SYSROOT_ENV) or "/")
    if not root.is_dir():
        from edgekit.errors import UsageError

        raise UsageError(f"{SYSROOT_ENV}={root} is not a directory: unset it to probe this machine")
    return root


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def cpuinfo(root: Path) -> tuple[dict, int | None]:
    """The keys of the first processor block of /proc/cpuinfo, plus the file's global lines (Arm: Hardware, Model);
    and how many processor blocks it has."""
    text = _read(root, "proc/cpuinfo") or ""
    out: dict[str, str] = {}
    processors = 0
    for line in text.splitlines():
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            out.setdefault(key.lower(), value)
            processors += key.lower() == "processor"
    return out, processors or None


def cpu_description(info: dict) -> tuple[str, str, str | None]:
    """(family "arm"|"x86"|"other", CPU name, Arm part number as hex or None)."""
    if "flags" in info:
        return "x86", info.get("model name") or "x86-64", None
    if "features" in info or "cpu part" in info:
        part = _int(info.get("cpu part"))
        if part is None:
            return "arm", info.get("model name") or "Arm", None
        return "arm", ARM_PARTS.get(part, f"Arm part {part:#x}"), f"{part:#x}"
    return "other", info.get("model name") or info.get("cpu model") or "unknown", None


def cpu_id(info: dict) -> str | None:
    """x86's `cpu family F, model M`: what tells CPUs apart that /proc/cpuinfo names alike (a cloud's "AMD EPYC" is
    Zen 1 to Zen 5, with very different INT8 speed-ups)."""
    if "cpu family" not in info:
        return None
    return f"cpu family {info['cpu family']}, model {info.get('model', '?')}"


def board_model(root: Path) -> str | None:
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        if text := _read(root, rel):
            return text
    product = _read(root, "sys/devices/virtual/dmi/id/product_name")
    vendor = _read(root, "sys/devices/virtual/dmi/id/sys_vendor")
    return " ".join(p for p in (vendor, product) if p) or None


def cpufreq(root: Path) -> dict:
    base = "sys/devices/system/cpu/cpu0/cpufreq/"
    khz = {k: _int(_read(root, base + f)) for k, f in
           (("cur_mhz", "scaling_cur_freq"), ("min_mhz", "cpuinfo_min_freq"), ("max_mhz", "cpuinfo_max_freq"))}
    return {"governor": _read(root, base + "scaling_governor"),
            **{k: round(v / 1000) if v else None for k, v in khz.items()}}


def _cpu_zone(root: Path) -> Path | None:
    """The thermal zone of the SoC/CPU: the Pi's cpu-thermal, x86's package sensor, else the first zone."""
    zones = sorted((root / "sys/class/thermal").glob("thermal_zone*"))
    kinds = {z: (_read(z, "type") or "") for z in zones}
    for wanted in ("cpu-thermal", "x86_pkg_temp", "cpu_thermal", "soc_thermal"):
        for z, kind in kinds.items():
            if kind == wanted:
                return z
    return zones[0] if zones else None


def temperature_c(root: Path) -> float | None:
    z = _cpu_zone(root)
    milli = _int(_read(z, "temp")) if z else None
    return None if milli is None else milli / 1000.0


def soft_limit_c(root: Path, is_pi: bool) -> float | None:
    """Where the SoC starts to slow down: its first passive trip point, else the Pi firmware's 80 C."""
    z = _cpu_zone(root)
    if z:
        for trip in sorted(z.glob("trip_point_*_type")):
            if _read(trip.parent, trip.name) == "passive":
                milli = _int(_read(trip.parent, trip.name.replace("_type", "_temp")))
                if milli:
                    return milli / 1000.0
    return PI_SOFT_LIMIT_C if is_pi else None


def throttled(root: Path) -> dict | None:
    """The Pi firmware's throttled flags (the file the firmware driver exposes, as `vcgencmd get_throttled`);
    None where there is no such firmware."""
    # the firmware node sits one or two levels under platform (Pi 4: soc/soc:firmware); no recursive glob: /sys
    # is full of symlink loops
    found = [_read(p.parent, p.name) for depth in ("*", "*/*") for p in
             sorted(root.glob(f"sys/devices/platform/{depth}/get_throttled"))]
    if not found and root == Path("/") and shutil.which("vcgencmd"):
        try:
            r = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
            found = [r.stdout.strip().partition("=")[2]]
        except (OSError, subprocess.SubprocessError):
            found = []
    for raw in found:
        try:
            bits = int(raw or "", 16)
        except ValueError:
            continue
        return {"raw": f"{bits:#x}", "now": [n for b, n in THROTTLE_BITS.items() if bits >> b & 1],
                "since_boot": [n for b, n in THROTTLE_BITS.items() if bits >> (b + 16) & 1]}
    return None


def memory_mb(root: Path) -> dict:
    out = {}
    for line in (_read(root, "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable") and rest.split():
            out[key.lower().replace("mem", "") + "_mb"] = round(int(rest.split()[0]) / 1024)
    return out


def thermal(root: Path | None = None) -> dict:
    """What may change during a run: temperature and throttled flags (sampled before and after)."""
    root = root or sysroot()
    return {"temperature_c": temperature_c(root), "throttled": throttled(root), "freq_mhz": cpufreq(root)["cur_mhz"]}


def fingerprint(root: Path | None = None) -> dict:
    root = root or sysroot()
    info, cores = cpuinfo(root)
    family, cpu, part = cpu_description(info)
    flags = set((info.get("flags") or info.get("features") or "").split())
    board = board_model(root)
    is_pi = bool(board and board.startswith("Raspberry Pi"))
    return {"board": board, "cpu": cpu, "cpu_id": cpu_id(info), "cpu_part": part, "family": family, "cores": cores,
            "int8_features": {k: flag in flags for k, flag in INT8_FEATURES.get(family, {}).items()},
            "cpufreq": cpufreq(root), "memory": memory_mb(root), "soft_limit_c": soft_limit_c(root, is_pi),
            "is_raspberry_pi": is_pi}


def peak_c(thermal_samples: dict) -> float | None:
    """The highest temperature a run's `thermal` block ({"before", "after"}) saw, its peak during the run included."""
    before, after = thermal_samples.get("before") or {}, thermal_samples.get("after") or {}
    temps = [t for t in (before.get("temperature_c"), after.get("temperature_c"), after.get("max_temperature_c"))
             if t is not None]
    return max(temps) if temps else None


def fast_int8(fp: dict) -> bool | None:
    """Whether the CPU has the instructions fast int8 kernels need; None when the family is unknown."""
    wanted = FAST_INT8.get(fp.get("family"))
    return None if wanted is None else any(fp["int8_features"].get(k) for k in wanted)


def run_warnings(fp: dict, before: dict, after: dict) -> list[dict]:
    """Why a run's latency may not compare with others, each {"kind": governor|throttled|heat, "message"}: a governor
    that scales the clock, throttling, heat. `after` may carry the run's peak (`max_temperature_c`) and every
    throttled flag seen during it (`throttled_seen`)."""
    out = []
    gov = fp["cpufreq"].get("governor")
    if gov and gov != "performance":
        moved = before.get("freq_mhz") != after.get("freq_mhz") and None not in (before.get("freq_mhz"),
                                                                                  after.get("freq_mhz"))
        out.append({"kind": "governor", "message": (
            f"cpufreq governor is '{gov}', not 'performance': the clock may scale during a run"
            + (f" (it went from {before['freq_mhz']} to {after['freq_mhz']} MHz in this one)" if moved else "")
            + " (set it with `echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`)")})
    b, a = before.get("throttled") or {}, after.get("throttled") or {}
    seen = set(a.get("now", [])) | set(after.get("throttled_seen", []))
    new = sorted(set(a.get("since_boot", [])) - set(b.get("since_boot", [])) | seen)
    if new:
        out.append({"kind": "throttled", "message": (
            f"the board reported {', '.join(new)} during the run (throttled flags {a.get('raw', '?')}): its latency "
            "is not comparable; cool it or fix its power supply and run again")})
    limit = fp.get("soft_limit_c")
    temps = [t for t in (before.get("temperature_c"), after.get("temperature_c"), after.get("max_temperature_c"))
             if t is not None]
    if limit and temps and max(temps) >= limit:
        out.append({"kind": "heat", "message": (
            f"the SoC reached {max(temps):.1f} C, at or above its soft limit of {limit:.0f} C: the clock was likely "
            "lowered; add cooling and run again")})
    return out


class Watch:
    """Thermal samples during a run, at most one a second (a `tick` callback's companion): the peak temperature and
    every throttled flag raised, which before-and-after samples alone would miss."""

    def __init__(self, root: Path | None = None, every_s: float = 1.0):
        import time

        self._time, self.root, self.every_s = time.monotonic, root, every_s
        self.before = thermal(root)
        self._last = self._time()
        self.peak = self.before["temperature_c"]
        self.flags: set[str] = set()

    def sample(self) -> None:
        now = self._time()
        if now - self._last < self.every_s:
            return
        self._last = now
        self._add(thermal(self.root))

    def _add(self, t: dict) -> None:
        if t["temperature_c"] is not None:
            self.peak = t["temperature_c"] if self.peak is None else max(self.peak, t["temperature_c"])
        self.flags |= set((t["throttled"] or {}).get("now", []))

    def done(self) -> dict:
        after = thermal(self.root)
        self._add(after)
        return {**after, "max_temperature_c": self.peak, "throttled_seen": sorted(self.flags)}
