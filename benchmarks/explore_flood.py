"""`vae explore` under a flood of decodes: starts the explorer on a checkpoint as a user would
(a process of its own), sends N decode requests of random codes from C concurrent clients, and
prints the latency of each answer (median, 99th percentile, worst) and the decodes per second.

    python benchmarks/explore_flood.py CKPT [--requests 1000] [--clients 8]

Issue 21's goal: every answer under 200 ms at the 99th percentile on two CPU cores, one decode
under 50 ms for the default MNIST model."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def flood(url: str, latent_dim: int, requests: int, clients: int) -> list:
    import httpx2 as httpx

    rng = random.Random(0)
    bodies = [json.dumps({"z": [rng.gauss(0, 1) for _ in range(latent_dim)]}) for _ in range(requests)]
    times: list = []
    queue = list(range(requests))

    async def client(session):
        while queue:
            body = bodies[queue.pop()]
            start = time.perf_counter()
            response = await session.post(
                url + "api/decode", content=body, headers={"Content-Type": "application/json"}
            )
            times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text

    async with httpx.AsyncClient(timeout=30) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaecli", "explore", args.ckpt, "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/"
        assert url in line, line
        import httpx2 as httpx

        latent_dim = httpx.get(url + "api/info", timeout=60).json()["latent_dim"]
        single = []
        with httpx.Client() as session:  # one at a time, one connection: the latency of one decode
            for _ in range(50):
                start = time.perf_counter()
                session.post(url + "api/decode", json={"z": [0.1] * latent_dim})
                single.append(time.perf_counter() - start)
        started = time.perf_counter()
        times = asyncio.run(flood(url, latent_dim, args.requests, args.clients))
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    times.sort()
    ms = lambda s: f"{1000 * s:.1f} ms"  # noqa: E731
    print(f"one decode at a time (50): median {ms(statistics.median(single))}, worst {ms(max(single))}")
    print(
        f"flood of {args.requests} decodes from {args.clients} clients: median {ms(statistics.median(times))}, "
        f"p99 {ms(times[int(0.99 * len(times)) - 1])}, worst {ms(times[-1])}; {args.requests / wall:.0f} decodes/s"
    )


if __name__ == "__main__":
    main()
