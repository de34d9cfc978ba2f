"""What ``import polyinit`` costs beyond numpy (issue 24, target < 50 ms).

Runs ``--processes`` pairs of fresh interpreters, alternating ``import numpy`` and ``import numpy,
polyinit``, and prints the median wall time of each and their difference, plus the median of
``import polyinit`` timed inside the process after numpy, in wall time and in CPU time (which
other processes' load inflates much less than wall time). Bytecode is written first (one
throw-away run without PYTHONDONTWRITEBYTECODE), as an installed package has it. Use
``python -X importtime -c "import numpy, polyinit"`` to see what each module costs.

    python benchmarks/bench_import.py [--processes 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

INSIDE = (
    "import time, numpy; start, cpu = time.perf_counter(), time.process_time(); import polyinit; "
    "print(time.perf_counter() - start, time.process_time() - cpu)"
)


def wall(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=15)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import numpy, polyinit"], env=env, check=True)  # writes bytecode
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; {args.processes} processes each")
    numpy_only, both, inside, cpu = [], [], [], []
    for _ in range(args.processes):
        numpy_only.append(wall("import numpy", env))
        both.append(wall("import numpy, polyinit", env))
        out = subprocess.run([sys.executable, "-c", INSIDE], env=env, check=True, capture_output=True, text=True)
        wall_s, cpu_s = map(float, out.stdout.split())
        inside.append(wall_s)
        cpu.append(cpu_s)
    a, b, c, d = (statistics.median(x) * 1e3 for x in (numpy_only, both, inside, cpu))
    print(f"process: numpy alone {a:.1f} ms, numpy + polyinit {b:.1f} ms, difference {b - a:.1f} ms")
    print(
        f"import polyinit after numpy, timed inside the process: {c:.1f} ms wall, {d:.1f} ms CPU "
        f"(target < 50 ms: {'met' if c < 50 else 'MISSED'} in wall time, {'met' if d < 50 else 'MISSED'} in CPU time)"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
