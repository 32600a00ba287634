"""What one build needs of a machine: the CPUs and the memory a Ray task declares, so that the scheduler never puts
two builds on a node that holds one."""
from __future__ import annotations

# Peak resident memory of `edgekit build`, MB, by route and variant: BENCHMARKS.md section 1 (48 calibration and 64
# validation images; lite3 and lite4 measured on x86 only). The litert route (arm64) needs 1.23-1.28x the onnx
# route's for lite0-2; LITERT_OVER_ONNX extends that to the variants it was not measured for.
BUILD_PEAK_MB = {"onnx": {"lite0": 1846, "lite1": 2095, "lite2": 2310, "lite3": 4047, "lite4": 6289},
                 "litert": {"lite0": 2365, "lite1": 2592, "lite2": 2848}}
LITERT_OVER_ONNX = 1.3
HEADROOM = 1.25  # more calibration images than the benchmark's 48 (200 by default), a budget's extra models
CPUS_PER_PAIR = 1  # the stages are mostly single-threaded (quantization, calibration passes)


def build_memory_bytes(variant: str, route: str) -> int:
    mb = BUILD_PEAK_MB.get(route, {}).get(variant)
    if mb is None:
        mb = BUILD_PEAK_MB["onnx"][variant] * (LITERT_OVER_ONNX if route == "litert" else 1.0)
    return int(mb * HEADROOM * 1024 * 1024)
