"""How long the embedded micro-benchmark takes to generate from a cold cache: every split of every task in every
language, plus the tokenizer corpus (what the first `xgrid search` of the default space, or the first test of
tests/data/test_microbench.py, pays once per process).

    python benchmarks/microbench_generation.py [--runs 5] [--seed 0]

Each run empties the cache first. Prints the median, min and max wall time over the runs (about 2 s on an idle
core when this was written). Timing lives here, not in a test: a wall-clock bound fails on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from xgrid.data import microbench as mb


def generate_all(seed: int) -> int:
    """Generate every split and the corpus; return how many splits were generated."""
    count = 0
    for name in mb.TASK_NAMES:
        for lang in mb.languages(name):
            for split in mb.splits(name, lang):
                mb.load(name, lang, split, seed=seed)
                count += 1
    mb.corpus(seed=seed)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold-cache runs to time (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    times, splits = [], 0
    for _ in range(args.runs):
        mb.clear_cache()
        start = time.perf_counter()
        splits = generate_all(args.seed)
        times.append(time.perf_counter() - start)
    print(f"micro-benchmark generation, cold cache: {splits} splits + corpus, {args.runs} runs")
    print(f"  median {statistics.median(times):.2f} s   min {min(times):.2f} s   max {max(times):.2f} s")


if __name__ == "__main__":
    main()
