"""Training on data larger than memory: `vae train tensor:FILE` through the memory-mapped cache.

Writes a ``.npy`` of ``--gb`` GB of 28x28 grey images (MNIST's training images repeated when
``--data-dir`` has them, else noise), then runs ``vae train tensor:FILE --epochs 1`` as a whole
process twice: cold (the cache is built: the file converted once into uint8 train and test
files) and warm (the cache mapped again). Each run reports its wall time, its epoch (from the
metrics) and the peak resident memory of the process (``/usr/bin/time``'s maximum RSS).

A cache larger than a quarter of the available memory is mapped (the ``--gb`` run); a smaller
one is read into memory. On a ``--compare-gb`` file, the warm epoch with the cache read into
memory (the default there) against the same epoch with it mapped (``IN_MEMORY_SHARE`` set to 0),
alternating, ``--rounds`` times.

The network is kept small (``--hidden``, batch ``--batch-size``) so that an epoch over 8 GB
takes a minute or two on two cores: this measures the data path, not the arithmetic.

    python benchmarks/mapped_data.py --gb 8 --data-dir ../shared/data --write
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pythae_speed import run  # noqa: E402

TITLE = "## Data larger than memory: `tensor:` through the memory-mapped cache, CPU"

MAPPED = r"""
import sys
from vaecli import datacache
datacache.IN_MEMORY_SHARE = 0.0  # mapped, though it would fit in memory
from vaecli.cli import main
sys.argv = ["vae", *sys.argv[1:]]
main()
"""


def write_images(path: Path, gb: float, data_dir: str) -> int:
    import numpy as np

    n = int(gb * 2**30) // 784
    source = None
    try:
        from vaecli.data import load_dataset

        source = load_dataset("mnist", {}, data_dir, False).splits.train.images.numpy()
    except Exception:  # no MNIST here: noise
        source = np.random.default_rng(0).integers(0, 256, (60000, 1, 28, 28), dtype=np.uint8)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
    for start in range(0, n, len(source)):
        stop = min(n, start + len(source))
        out[start:stop] = source[: stop - start]
    out.flush()
    del out
    return n


def train(file: Path, tmp: Path, args, runner: list[str]) -> dict:
    out = tmp / "m.safetensors"
    cmd = [*runner, "train", f"tensor:{file}", "--epochs", "1", "--arch-option", f"hidden={args.hidden}"]
    cmd += ["--batch-size", str(args.batch_size), "--data-dir", str(tmp / "data"), "-o", str(out), "--force"]
    wall, peak, _ = run(cmd)
    import vaecli

    record = vaecli.metadata(out)["metrics"][-1]
    return {"wall_s": wall, "peak_mb": peak, "epoch_s": record["seconds"], "test_nelbo": record["test_nelbo"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=8.0)
    parser.add_argument("--compare-gb", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--tmp", default="", help="where the files go (default: a temporary folder)")
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    args = parser.parse_args()
    from train_speed import machine, publish

    vae = [shutil.which("vae") or "vae"]
    mapped = [sys.executable, "-c", MAPPED]
    with tempfile.TemporaryDirectory(dir=args.tmp or None) as tmp_name:
        tmp = Path(tmp_name)
        big = tmp / "big.npy"
        n = write_images(big, args.gb, args.data_dir)
        cold = train(big, tmp, args, vae)
        print("cold", json.dumps(cold), flush=True)
        warm = train(big, tmp, args, vae)
        print("warm", json.dumps(warm), flush=True)
        big.unlink()
        shutil.rmtree(tmp / "data")
        small = tmp / "small.npy"
        m = write_images(small, args.compare_gb, args.data_dir)
        train(small, tmp, args, vae)  # builds the cache
        times: dict[str, list] = {"mapped": [], "in memory": []}
        for _ in range(args.rounds):
            for name, runner in (("mapped", mapped), ("in memory", vae)):
                result = train(small, tmp, args, runner)
                times[name].append(result)
                print(name, json.dumps(result), flush=True)
    size = n * 784 / 2**30
    lines = [
        f"Machine: {machine('cpu')}. `vae train tensor:FILE --epochs 1 --arch-option hidden={args.hidden} "
        f"--batch-size {args.batch_size}` (784-{args.hidden}-20 MLP) on {n:,} 28x28 grey images "
        f"({size:.1f} GB; MNIST's repeated), the test split 10% of them; whole processes.",
        "",
        "| run | wall s | epoch s (train, test pass, save) | peak resident MB | test -ELBO |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in (("cold: the cache built, then one epoch", cold), ("warm: the cache mapped again", warm)):
        lines.append(
            f"| {name} | {r['wall_s']:.1f} | {r['epoch_s']:.1f} | {r['peak_mb']:.0f} | {r['test_nelbo']:.2f} |"
        )
    lines += [
        "",
        f"The epoch on a {m * 784 / 2**30:.1f} GB file ({m:,} images) with the cache warm, mapped (forced) "
        f"against read into memory (the default at that size), alternating, {args.rounds} rounds (median):",
        "",
        "| data | epoch s (median) | each round | peak resident MB (median) |",
        "| --- | ---: | --- | ---: |",
    ]
    for name, results in times.items():
        epochs = [r["epoch_s"] for r in results]
        lines.append(
            f"| {name} | {statistics.median(epochs):.2f} | {', '.join(f'{e:.2f}' for e in epochs)} | "
            f"{statistics.median(r['peak_mb'] for r in results):.0f} |"
        )
    lines += ["", f"Command: `python benchmarks/mapped_data.py --gb {args.gb:g} --data-dir DIR`."]
    publish(TITLE, lines, args.write)


if __name__ == "__main__":
    main()
