"""Training speed: `vae train mnist` against the conventional PyTorch script, side by side.

The conventional script is what people copy from the PyTorch examples (vae/main.py):
torchvision's MNIST Dataset, DataLoader(ToTensor()) with shuffling, a 784-400-20 VAE, summed
BCE + KL, Adam 1e-3, batch 128, a test pass after every epoch (on CUDA the example's
num_workers=1 and pin_memory). `vae` trains its default model, which is the same network,
objective, optimiser and batch size.

The two alternate, each in its own process, ROUNDS times: conventional, vae, conventional, vae...
so that a slow spell of the machine hits both. An epoch is timed from its first batch to the end
of its test pass (for vae, also its checkpoint write). The table gives the median over all
epochs of all rounds except each run's first (warm-up), images per second of training, the
test loss after the same number of epochs, and the process's peak memory.

    python benchmarks/train_speed.py --data-dir ../shared/data                 # CPU
    python benchmarks/train_speed.py --data-dir ../shared/data --device cuda \\
        --precision fp32 bf16 --compile                                        # GPU

and with --write the table goes into benchmarks/RESULTS.md (replacing its previous section for
the same device).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def baseline_mb() -> float:
    """Resident memory once torch and torchvision are imported and an optimizer was made (which
    imports torch._dynamo): what either side needs before it holds any data."""
    import torch
    import torchvision  # noqa: F401

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    return rss_mb()


def conventional(data_dir: str, epochs: int, seed: int, device: str) -> dict:
    import torch
    from classic_mnist import ClassicVAE, classic_loss
    from torchvision import datasets, transforms

    baseline = baseline_mb()
    torch.manual_seed(seed)
    dev = torch.device(device)
    kwargs = {"num_workers": 1, "pin_memory": True} if dev.type == "cuda" else {}
    train_loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=True, download=False, transform=transforms.ToTensor()),
        batch_size=128,
        shuffle=True,
        **kwargs,
    )
    test_loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=False, transform=transforms.ToTensor()), batch_size=128, shuffle=False, **kwargs
    )
    model = ClassicVAE().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs_out = []
    for _ in range(epochs):
        model.train()
        train_nelbo = 0.0
        sync(dev)
        start = time.perf_counter()
        for data, _ in train_loader:
            data = data.to(dev)
            opt.zero_grad()
            recon, mu, logvar = model(data)
            loss = classic_loss(recon, data, mu, logvar)
            loss.backward()
            train_nelbo += loss.item()  # as the example does, for its log lines
            opt.step()
        sync(dev)
        trained = time.perf_counter()
        model.eval()
        test_nelbo = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                data = data.to(dev)
                recon, mu, logvar = model(data)
                test_nelbo += classic_loss(recon, data, mu, logvar).item()
        epochs_out.append(
            {
                "train_s": trained - start,
                "epoch_s": time.perf_counter() - start,
                "test_nelbo": test_nelbo / len(test_loader.dataset),
            }
        )
    return {"epochs": epochs_out, "baseline_mb": baseline, "peak_mb": peak_rss_mb(), **gpu_memory(dev)}


def vae(
    data_dir: str, epochs: int, seed: int, device: str, precision: str, compile: bool = False, batch_size: int = 128
) -> dict:
    """One `vae train mnist` run in this process: each epoch's seconds (training; training, test
    pass and checkpoint) and test loss, and the process's memory."""
    import torch

    import vaecli

    baseline = baseline_mb()
    times: dict = {}

    class Clock:
        def start(self, config, path, device, data) -> None:
            self.device = device

        def epoch_start(self, epoch, epochs, batches) -> None:
            sync(self.device)
            times[epoch] = time.perf_counter()

        def step(self, done, loss) -> None: ...

        def epoch_end(self, m) -> None:
            times[m["epoch"]] = (time.perf_counter() - times[m["epoch"]], m)

        def warn(self, message) -> None:
            print(message, file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        vaecli.train(
            dataset="mnist",
            data_dir=data_dir,
            download=False,
            epochs=epochs,
            seed=seed,
            device=device,
            precision=precision,
            compile=compile,
            batch_size=batch_size,
            out=str(Path(tmp) / "m.safetensors"),
            reporter=Clock(),
        )
    epochs_out = [
        {"train_s": m["seconds"], "epoch_s": s, "test_nelbo": m["test_nelbo"]}
        for s, m in (times[e] for e in sorted(times))
    ]
    return {"epochs": epochs_out, "baseline_mb": baseline, "peak_mb": peak_rss_mb(), **gpu_memory(torch.device(device))}


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def gpu_memory(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"gpu_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}


def worker(args) -> None:
    if args.worker == "conventional":
        result = conventional(args.data_dir, args.epochs, args.seed, args.device)
    else:
        result = vae(
            args.data_dir,
            args.epochs,
            args.seed,
            args.device,
            args.worker.split(":")[1],
            args.worker.endswith(":compile"),
        )
    print("RESULT " + json.dumps(result))


def launch(kind: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--data-dir",
        args.data_dir,
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        what = torch.cuda.get_device_name(0)
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        try:
            model = next(
                line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
            )
            what = f"{model}, {torch.get_num_threads()} threads"
        except (OSError, StopIteration):
            pass
    return f"{what}, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each run (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32", "auto"],
        help="vae --precision values to run (each alternates with the conventional script)",
    )
    parser.add_argument("--compile", action="store_true", help="also run vae with --compile")
    parser.add_argument("--write", action="store_true", help="put the table into benchmarks/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
        raise SystemExit(f"no MNIST in {args.data_dir}/MNIST/raw; pass --data-dir")

    kinds = [f"vae:{p}" for p in args.precision] + (
        [f"vae:{p}:compile" for p in args.precision] if args.compile else []
    )
    runs: dict[str, list] = {k: [] for k in ["conventional", *kinds]}
    for r in range(args.rounds):
        for kind in ["conventional", *kinds] if r % 2 == 0 else [*kinds, "conventional"]:
            result = launch(kind, args)
            runs[kind].append(result)
            last = result["epochs"][-1]
            print(
                f"round {r + 1} {kind:24s} "
                + " ".join(f"{e['epoch_s']:.2f}" for e in result["epochs"])
                + f" s/epoch, test loss {last['test_nelbo']:.2f}",
                flush=True,
            )
    text = table(runs, args)
    print(text)
    if args.write:
        write_section(f"## Training speed on {'GPU' if args.device.startswith('cuda') else 'CPU'}", text)


def summary(results: list) -> dict:
    epochs = [e for r in results for e in r["epochs"][1:]] or [e for r in results for e in r["epochs"]]
    return {
        "epoch_s": statistics.median(e["epoch_s"] for e in epochs),
        "train_s": statistics.median(e["train_s"] for e in epochs),
        "test_nelbo": statistics.mean(r["epochs"][-1]["test_nelbo"] for r in results),
        "peak_mb": max(r["peak_mb"] for r in results),
        "baseline_mb": min(r["baseline_mb"] for r in results),
        "gpu_peak_mb": max((r.get("gpu_peak_mb", 0) for r in results), default=0),
    }


def table(runs: dict, args) -> str:
    import torch

    base = summary(runs["conventional"])
    gpu = args.device.startswith("cuda")
    head = f"| run | s/epoch | train images/s | speed-up | test loss after {args.epochs} epochs | peak memory (MB) |"
    lines = [
        f"Machine: {machine(args.device)}. {args.rounds} alternating rounds of {args.epochs} epochs each; "
        f"s/epoch is the median epoch (training and test pass) over all rounds, first epoch of each run left out.",
        "",
        head,
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, results in runs.items():
        s = summary(results)
        name = (
            "conventional DataLoader script"
            if kind == "conventional"
            else "vae train mnist --precision "
            + kind.split(":")[1]
            + (" --compile" if kind.endswith(":compile") else "")
        )
        ratio = base["epoch_s"] / s["epoch_s"]
        memory = (
            f"{s['gpu_peak_mb']:.0f} GPU"
            if gpu
            else f"{s['peak_mb']:.0f} ({s['peak_mb'] - s['baseline_mb']:+.0f} over import)"
        )
        lines.append(
            f"| {name} | {s['epoch_s']:.3f} | {60000 / s['train_s']:,.0f} | {ratio:.2f}x | {s['test_nelbo']:.2f} | {memory} |"
        )
    per_round = []
    for kind in runs:
        if kind == "conventional":
            continue
        ratios = [
            statistics.median(e["epoch_s"] for e in c["epochs"][1:] or c["epochs"])
            / statistics.median(e["epoch_s"] for e in v["epochs"][1:] or v["epochs"])
            for c, v in zip(runs["conventional"], runs[kind])
        ]
        per_round.append(f"{kind.removeprefix('vae:')}: " + ", ".join(f"{x:.2f}" for x in ratios))
    lines += [
        "",
        "Speed-up of each round (conventional / vae): " + "; ".join(per_round) + ".",
        "",
        f"Command: `python benchmarks/train_speed.py --data-dir DIR --device {args.device} --epochs {args.epochs} "
        f"--rounds {args.rounds} --precision {' '.join(args.precision)}{' --compile' if args.compile else ''}`"
        f" (torch {torch.__version__}).",
    ]
    return "\n".join(lines) + "\n"


def publish(title: str, lines: list, write: bool) -> None:
    """Print a benchmark's table (``lines``) and, with ``write``, put it in RESULTS.md as the
    section ``title``."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        write_section(title, text)


def table_options(parser, name: str) -> None:
    """The options of a benchmark that makes one table: ``--out`` (its results as JSON,
    benchmarks/NAME.json), ``--write`` (the table into RESULTS.md) and ``--render`` (only the
    table of ``--out``, nothing run)."""
    parser.add_argument("--out", default=str(HERE / f"{name}.json"))
    parser.add_argument("--write", action="store_true", help="put the table in RESULTS.md")
    parser.add_argument("--render", action="store_true", help="only print (and --write) the table of --out")


def rendered(args, title: str, table_lines) -> bool:
    """Under ``--render``: print (and ``--write``) the table of the results in ``--out``; whether
    it did (then the benchmark runs nothing)."""
    if args.render:
        publish(title, table_lines(json.loads(Path(args.out).read_text())), args.write)
    return args.render


def keep(args, title: str, table_lines, results: dict) -> None:
    """The results into ``--out``, and their table printed (and ``--write``n)."""
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    publish(title, table_lines(results), args.write)


def write_section(title: str, body: str) -> None:
    """Replace (or append) the section ``title`` of RESULTS.md."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    parts = text.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    new = f"{title}\n\n{body}"
    for i, s in enumerate(sections):
        if s.splitlines()[0].strip() == title:
            sections[i] = new
            break
    else:
        sections.append(new)
    path.write_text(head.rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for s in sections))


if __name__ == "__main__":
    main()
