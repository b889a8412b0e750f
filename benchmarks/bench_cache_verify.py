"""What checking the activation cache costs next to the SAE training it protects (goal: <= 5 %).

    python benchmarks/bench_cache_verify.py [CACHE_DIR] [--training-seconds S]

Two checks read the cache of a layer when its SAEs are trained: rule cache_verify hashes every shard
(``ActivationReader.verify``), and the training job's reader hashes the bytes it parses (``read_all``), against a
plain memory-mapped read (what the reader did before). CACHE_DIR defaults to the toy run's cache
(results/toy/cache/layer2-resid_post, from ``make smoke``). Training time is measured by training the grid of
config.yaml on that cache once (as rule sae_train does, one thread), unless ``--training-seconds`` gives it (e.g.
``training_seconds`` in a trained SAE's cfg.json). Reads alternate over several rounds and the median is reported;
the files sit in the page cache after the first round, as they do after caching. A streamed cache (one too big for
memory) costs no more: its reader hashes each shard once, not once per epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before the trainer imports tqdm

import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors import safe_open  # noqa: E402

from lmscalpel.cache import ActivationReader  # noqa: E402
from lmscalpel.config import check_config, effective_schema, fill_defaults  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def plain_read(reader: ActivationReader) -> torch.Tensor:
    parts = []
    for path in reader.shard_files:
        with safe_open(path, "pt") as fh:
            parts.append(fh.get_tensor("activations"))
    return torch.cat(parts)


def training_seconds(cache_dir: Path) -> float:
    """The toy grid of config.yaml trained on ``cache_dir`` (the sae_train job's work, without its start-up)."""
    from lmscalpel.sae import plan as sae_plan
    from lmscalpel.sae.stage import train_layer

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    schema = effective_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    check_config(config, schema)
    fill_defaults(config, schema)
    reader = ActivationReader(cache_dir)
    specs = sae_plan.layer_specs(config, int(reader.manifest["layer"]))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train_layer(cache_dir / "manifest.json", {s["sae_id"]: Path(out) / s["sae_id"] for s in specs}, specs,
                    sae_plan.train_config(config), seed=config["seed"], checkpoint_dir=None, device="cpu")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache_dir", nargs="?", default=str(REPO / "results" / "toy" / "cache" / "layer2-resid_post"))
    parser.add_argument("--training-seconds", type=float)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cache_dir = Path(args.cache_dir)
    reader = ActivationReader(cache_dir)
    size = sum(path.stat().st_size for path in reader.shard_files)
    timings = {"plain read": [], "checked read": [], "cache_verify": []}
    for _ in range(args.rounds):
        # a fresh reader each round: a reader hashes each shard once
        for name, run in (("plain read", lambda: plain_read(reader)),
                          ("checked read", lambda: ActivationReader(cache_dir).read_all()),
                          ("cache_verify", lambda: ActivationReader(cache_dir).verify())):
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in timings.items()}
    train = args.training_seconds or training_seconds(cache_dir)
    extra = median["checked read"] - median["plain read"] + median["cache_verify"]
    print(f"cache {cache_dir}: {len(reader.shard_files)} shards, {size / 1e6:.0f} MB; "
          "load avg %.2f / %.2f / %.2f" % os.getloadavg())
    for name, seconds in median.items():
        print(f"  {name:13s} {seconds:7.3f} s  ({size / 1e6 / seconds:6.0f} MB/s)")
    print(f"  SAE training  {train:7.1f} s")
    print(f"checks add {extra:.3f} s = {100 * extra / train:.2f} % of SAE training (goal <= 5 %)")


if __name__ == "__main__":
    main()
