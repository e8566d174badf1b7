"""Start-up: each command's whole process against `python -c "import torch"`, timed together.

A command that needs torch cannot start faster than torch imports; one that does not need it
should not pay for it. The commands and `import torch` run interleaved, ``--repeats`` times each,
as a user types them (the console script), so that a slow spell of the machine hits all of them;
the table gives the median wall time, its ratio to the median of `import torch` and the target of
issue 19. `vae sample` and `vae info` use a small checkpoint trained first.

    python benchmarks/startup.py --write
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "## Start-up against `import torch`, CPU"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    args = parser.parse_args()
    from train_speed import machine, publish

    import vaecli

    vae = shutil.which("vae") or "vae"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / "small.safetensors")
        vaecli.train(
            dataset="shapes",
            dataset_options={"n_train": 512, "n_test": 128, "size": 28},
            epochs=1,
            device="cpu",
            out=ckpt,
        )
        commands = {
            'python -c "import torch"': ([sys.executable, "-c", "import torch"], None),
            "vae --help": ([vae, "--help"], 0.4),
            "vae plugins": ([vae, "plugins"], 0.4),
            "vae info CKPT": ([vae, "info", ckpt], 0.4),
            "vae sample CKPT -n 64 -o grid.png": ([vae, "sample", ckpt, "-n", "64", "-o", f"{tmp}/g.png"], 1.3),
        }
        times: dict = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (cmd, _target) in commands.items():
                times[name].append(timed(cmd))
    torch_s = statistics.median(times['python -c "import torch"'])
    lines = [
        f"Machine: {machine('cpu')}. {args.repeats} interleaved runs of each whole process; median wall "
        'seconds and the ratio to the median of `python -c "import torch"` in the same run.',
        "",
        "| command | median s | fastest s | ratio to import torch | target |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, (_cmd, target) in commands.items():
        median = statistics.median(times[name])
        goal = "" if target is None else f"≤ {target}x ({'met' if median / torch_s <= target else 'not met'})"
        lines.append(f"| `{name}` | {median:.3f} | {min(times[name]):.3f} | {median / torch_s:.2f}x | {goal} |")
    lines += ["", f"Command: `python benchmarks/startup.py --repeats {args.repeats}`."]
    publish(TITLE, lines, args.write)


if __name__ == "__main__":
    main()
