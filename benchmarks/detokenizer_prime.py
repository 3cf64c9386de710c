"""vLLM's incremental detokenizer on eval-sized prompts: primed with the whole prompt (vLLM's own) against
the prompt's tail (`kotae.rag.detokenizer_prime`).

Each round builds one detokenizer per question, as vLLM's output processor does per request, and feeds
every request its answer one token a step, as the engine's outputs arrive; it reports the round's wall and
whether the streamed texts are the same. The prompts are kotae's QA prompts, each question with the
passages that follow its gold one in the paragraphs file, up to the context budget; the answers are the
gold answers and a blank line (the stop).

    python benchmarks/detokenizer_prime.py ../shared/data/qa/jsquad-valid.jsonl \
        ../shared/data/jawiki-paragraphs.jsonl --out /tmp/detokenizer-prime.json
"""

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

from transformers import AutoTokenizer
from vllm import SamplingParams
from vllm.v1.engine.detokenizer import FastIncrementalDetokenizer

from kotae.core.config import get_settings
from kotae.models.store import ModelStore
from kotae.rag import detokenizer_prime
from kotae.rag.engine_protocol import ANSWER_STOPS
from kotae.rag.prompt import DEFAULT_PROMPTER, fit_contexts
from kotae.rag.token_counter import TokenCounter

PASSAGES = 6
"""Paragraphs from each question's gold one on offered to the prompt, which keeps what fits its budget."""


def requests(args: argparse.Namespace, tokenizer: object) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) of the first `--limit` questions."""
    records = [json.loads(line) for line in args.qa.open(encoding="utf-8")][: args.limit]
    wanted = {record["gold_passage_ids"][0] for record in records}
    passages = {}
    with args.paragraphs.open(encoding="utf-8") as lines:
        following = 0
        for line in lines:
            paragraph = json.loads(line)
            if paragraph["id"] in wanted:
                following = PASSAGES
            if following:
                passages[paragraph["id"]] = paragraph
                following -= 1
    ordered = list(passages.values())
    at = {paragraph["id"]: i for i, paragraph in enumerate(ordered)}
    counter = TokenCounter(tokenizer)
    budget = get_settings().context_token_budget
    built = []
    for record in records:
        first = at[record["gold_passage_ids"][0]]
        contexts = fit_contexts(
            [SimpleNamespace(**paragraph) for paragraph in ordered[first : first + PASSAGES]], counter, budget
        )
        prompt = tokenizer.encode(DEFAULT_PROMPTER.qa(record["question"], contexts))  # type: ignore[attr-defined]
        answer = tokenizer.encode(record["answers"][0] + ANSWER_STOPS[0], add_special_tokens=False)  # type: ignore[attr-defined]
        built.append((prompt, answer))
    return built


def one_round(tokenizer: object, built: list[tuple[list[int], list[int]]]) -> tuple[float, list[str]]:
    """The wall of streaming every answer through a detokenizer of its own, and the texts streamed."""
    started = time.perf_counter()
    detokenizers = [
        FastIncrementalDetokenizer(
            tokenizer,
            SimpleNamespace(
                request_id=str(i),
                prompt_token_ids=prompt,
                prompt_embeds=None,
                sampling_params=SamplingParams(max_tokens=len(answer), stop=list(ANSWER_STOPS)),
            ),
        )
        for i, (prompt, answer) in enumerate(built)
    ]
    for step in range(max(len(answer) for _, answer in built)):
        for detokenizer, (_, answer) in zip(detokenizers, built, strict=True):
            if step < len(answer):
                detokenizer.update([answer[step]], False)
    return time.perf_counter() - started, [detokenizer.output_text for detokenizer in detokenizers]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("qa", type=Path, help="QA JSONL {qid, question, answers, gold_passage_ids}")
    parser.add_argument("paragraphs", type=Path, help="paragraphs JSONL {id, title, text} holding the gold")
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    parser.add_argument("--limit", type=int, default=980, help="questions (requests) per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = get_settings()
    tokenizer = AutoTokenizer.from_pretrained(ModelStore(settings.home).generator(settings.generator))
    built = requests(args, tokenizer)
    vllms_start = FastIncrementalDetokenizer.__init__
    detokenizer_prime.register()
    kotaes_start = FastIncrementalDetokenizer.__init__
    report: dict[str, object] = {
        "requests": len(built),
        "prompt_tokens_mean": sum(len(prompt) for prompt, _ in built) / len(built),
        "answer_tokens": sum(len(answer) for _, answer in built),
    }
    texts = {}
    for label, start in (("vllm", vllms_start), ("kotae", kotaes_start)) * args.rounds:
        FastIncrementalDetokenizer.__init__ = start  # type: ignore[method-assign]
        wall, texts[label] = one_round(tokenizer, built)
        report.setdefault(f"{label}_s", []).append(round(wall, 4))  # type: ignore[union-attr]
    report["same_text"] = texts["vllm"] == texts["kotae"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
