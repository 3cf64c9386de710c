"""Prompts encoded from many threads at once: through the tokenizer vLLM hands out, against kotae's token
counter on a tokenizer of its own (`kotae.rag.engine._read_tokenizer` says why).

vLLM's renderer wraps its tokenizer in a pool of `renderer_num_workers + 1` deep copies
(`vllm.tokenizers.maybe_make_thread_pool`, default 2); a call that finds every copy borrowed deep-copies
the whole tokenizer. Each round submits `--calls` one-prompt encodes to `--threads` threads and reports
its wall and this process's CPU time; the first round pays for whatever copies the pool grows by.

    python benchmarks/tokenizer_threads.py prompts.jsonl --out /tmp/tokenizer-threads.json
"""

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from transformers import AutoTokenizer
from vllm.tokenizers import maybe_make_thread_pool

from kotae.core.config import get_settings
from kotae.models.store import ModelStore
from kotae.rag.token_counter import TokenCounter


def rounds(encode: Callable[[str], object], prompts: list[str], args: argparse.Namespace) -> list[dict]:
    figures = []
    for _ in range(args.rounds):
        calls = [prompts[i % len(prompts)] for i in range(args.calls)]
        cpu, wall = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(encode, calls))
        figures.append(
            {"wall_ms": (time.perf_counter() - wall) * 1e3, "cpu_ms": (time.process_time() - cpu) * 1e3}
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("prompts", type=Path, help="prompts.jsonl of seed_table's prompts stage")
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    parser.add_argument("--threads", type=int, default=6, help="threads encoding at once")
    parser.add_argument("--calls", type=int, default=92, help="one-prompt encodes per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = get_settings()
    model = ModelStore(settings.home).generator(settings.generator)
    prompts = [json.loads(line)["prompt"] for line in args.prompts.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    pooled = maybe_make_thread_pool(AutoTokenizer.from_pretrained(model), copies=2)
    report: dict[str, object] = {"model": str(model), "pool_s": time.perf_counter() - started}
    report["vllm_pool"] = rounds(lambda p: pooled([p], add_special_tokens=True)["input_ids"], prompts, args)
    counter = TokenCounter(AutoTokenizer.from_pretrained(model))
    report["kotae"] = rounds(lambda p: counter.encode_many([p], add_special_tokens=True), prompts, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
