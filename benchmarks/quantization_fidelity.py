"""How closely 4-bit bases follow the 16-bit one under the same adapter, read on the CPU from the gold
answers' tokens instead of from served answers. Each model reads each built example (`kotae train
examples`: a RAG prompt and its gold answer) once, teacher-forced, and at every answer position its
next-token distribution is compared with the 16-bit base's:

- `kl`: KL divergence from the 16-bit model's distribution, mean over answer tokens (nats);
- `argmax_agree`: share of answer positions whose most likely token is the 16-bit model's;
- `gold_nll`: negative log-likelihood of the gold answer's tokens, mean over them;
- `greedy_exact`: share of examples whose every gold token is the model's most likely one, i.e. greedy
  decoding would write the gold answer.

Every model is loaded at once (a 270M base takes about 1.1 GB in fp32), so each example's reference
distribution is computed once and compared while it is in memory.

    kotae quantize --model BASE --out W4 --calib PASSAGES [--group-size 32]
    kotae train examples --base BASE --data held-out.jsonl --index IDX --out held-out.jsonl.gz
    python benchmarks/quantization_fidelity.py --base BASE --quantized W4 [W4-G32 ...] --adapter ADAPTER \\
        --examples held-out.jsonl.gz --limit 200 [--out results.json]
"""

import argparse
import itertools
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DTYPE = "float32"
"""Every model computes in fp32: what differs is the 4-bit rounding of the weights alone (and torch's CPU
bf16 matmuls are several times slower)."""


@dataclass
class Fidelity:
    """One model's figures against the 16-bit base, summed as the examples go."""

    model: str
    kl: float = 0.0
    argmax_agree: float = 0.0
    gold_nll: float = 0.0
    greedy_exact: float = 0.0
    tokens: int = 0
    examples: int = 0

    def add(self, log_p: Any, log_ref: Any, gold: Any) -> None:
        """One example's answer positions: the model's and the 16-bit model's log-probabilities
        [tokens, vocab], and the gold tokens [tokens]."""
        predicted = log_p.argmax(-1)
        self.kl += float((log_ref.exp() * (log_ref - log_p)).sum())
        self.argmax_agree += float((predicted == log_ref.argmax(-1)).sum())
        self.gold_nll -= float(log_p.gather(-1, gold[:, None]).sum())
        self.greedy_exact += float(bool((predicted == gold).all()))
        self.tokens += len(gold)
        self.examples += 1

    def means(self) -> dict[str, float | str | int]:
        per_token = max(self.tokens, 1)
        return {
            **asdict(self),
            "kl": self.kl / per_token,
            "argmax_agree": self.argmax_agree / per_token,
            "gold_nll": self.gold_nll / per_token,
            "greedy_exact": self.greedy_exact / max(self.examples, 1),
        }


def load(base: Path, adapter: Path) -> Any:
    """`base` (16-bit, or a `kotae quantize` output decompressed into plain layers) with the adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kotae.adapters.training import base_load_options

    model = AutoModelForCausalLM.from_pretrained(base, **base_load_options(base, DTYPE))
    return PeftModel.from_pretrained(model, str(adapter)).eval()


def answer_log_probs(model: Any, ids: Any, answer_tokens: int) -> Any:
    """The log-probabilities that predict the last `answer_tokens` of `ids` ([answer_tokens, vocab]); the LM
    head runs on those positions only (262k rows at every prompt position would cost more than the model)."""
    import torch

    out = model(input_ids=ids[None], logits_to_keep=answer_tokens + 1)
    return torch.log_softmax(out.logits[0, :-1].float(), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, required=True, help="the 16-bit base: the reference")
    parser.add_argument("--quantized", type=Path, nargs="+", required=True, help="`kotae quantize` outputs")
    parser.add_argument("--adapter", type=Path, required=True, help="the adapter every model reads with")
    parser.add_argument(
        "--examples", type=Path, required=True, help="built examples (`kotae train examples`)"
    )
    parser.add_argument("--limit", type=int, default=200, help="the first N examples")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from kotae.adapters.rows import ExampleRow, read_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row for _, row in itertools.islice(read_rows(args.examples, ExampleRow), args.limit)]
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    reference = load(args.base, args.adapter)
    models = {path.name: load(path, args.adapter) for path in args.quantized}
    figures = {name: Fidelity(name) for name in ["16-bit (itself)", *models]}
    started = time.perf_counter()
    with torch.inference_mode():
        for row in rows:
            # The prompt with BOS, as vLLM tokenizes it; the answer's tokens after it, without the blank
            # line that ends a training completion (a served answer stops at it, in one token or two).
            prompt = tokenizer(row.prompt)["input_ids"]
            answer = tokenizer(row.completion.rstrip(), add_special_tokens=False)["input_ids"]
            ids = torch.tensor(prompt + answer)
            gold = torch.tensor(answer)
            expected = answer_log_probs(reference, ids, len(answer))
            figures["16-bit (itself)"].add(expected, expected, gold)
            for name, model in models.items():
                figures[name].add(answer_log_probs(model, ids, len(answer)), expected, gold)
    seconds = time.perf_counter() - started

    print("| model | kl (nats/token) | argmax agree | gold NLL | greedy exact |")
    print("|---|---:|---:|---:|---:|")
    results = [figure.means() for figure in figures.values()]
    for result in results:
        print(
            f"| {result['model']} | {result['kl']:.4f} | {result['argmax_agree']:.4f} | "
            f"{result['gold_nll']:.4f} | {result['greedy_exact']:.3f} |"
        )
    print(f"{len(rows)} examples, {figures['16-bit (itself)'].tokens} answer tokens, {seconds:.0f} s")
    if args.out:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} ({platform.machine()}, {torch.get_num_threads()} torch threads)",
            "command": " ".join(sys.argv),
            "seconds": round(seconds, 1),
            "results": results,
        }
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
