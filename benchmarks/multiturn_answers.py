"""Answers to chat follow-ups from a running kotae server. Each multi-turn case written for the demo corpus
(`benchmarks/data/multiturn_demo.jsonl`, with the answers its gold passage gives) goes to
`/v1/chat/completions` three ways, and each answer is scored as `kotae eval` scores (exact, partial, char-F1):

- `chat`: the earlier turns and the follow-up, as a chat client sends them: kotae retrieves for the
  standalone query and writes the turns into the prompt;
- `bare`: the follow-up alone, as a chat that drops the history would ask it;
- `standalone`: the standalone query alone, as one question.

    kotae serve &        # the embedded default
    python benchmarks/multiturn_answers.py http://127.0.0.1:8000 [--out results.json]
"""

import argparse
import json
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

import httpx
from load import require_loopback
from standalone_query import CASES, conversation_of

from kotae.rag.metrics import score_answer
from kotae.rag.standalone_query import standalone_query

WAYS = ("chat", "bare", "standalone")


def messages_of(case: dict, way: str) -> list[dict[str, str]]:
    """The chat request's messages for `case` asked `way` (one of `WAYS`)."""
    if way == "bare":
        return [{"role": "user", "content": case["question"]}]
    if way == "standalone":
        return [{"role": "user", "content": standalone_query(conversation_of(case))}]
    history = []
    for question, answer in case["turns"]:
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return [*history, {"role": "user", "content": case["question"]}]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="kotae's base URL, on loopback (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    require_loopback(args.url)
    cases = [json.loads(line) for line in args.cases.read_text(encoding="utf-8").splitlines() if line.strip()]

    answers: dict[str, list[dict]] = {way: [] for way in WAYS}
    with httpx.Client(base_url=args.url, timeout=300) as client:
        for case in cases:
            for way in WAYS:
                body = {"messages": messages_of(case, way), "max_tokens": args.max_tokens, "temperature": 0}
                reply = client.post("/v1/chat/completions", json=body)
                reply.raise_for_status()
                text = reply.json()["choices"][0]["message"]["content"]
                score = score_answer(text, case["answers"])
                row = {"id": case["id"], "answer": text, "exact": score.exact, "partial": score.partial}
                answers[way].append({**row, "char_f1": round(score.char_f1, 3)})
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "model": client_model(args.url),
        "cases": len(cases),
        "scores": {
            way: {
                metric: round(statistics.fmean(float(row[metric]) for row in rows), 3)
                for metric in ("exact", "partial", "char_f1")
            }
            for way, rows in answers.items()
        },
        "answers": answers,
    }
    print(json.dumps(results["scores"], ensure_ascii=False))
    for index, case in enumerate(cases):
        print(case["id"], " | ".join(f"{way}: {answers[way][index]['answer']}" for way in WAYS))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def client_model(url: str) -> str:
    """The served base model and default adapter, as `/v1/models` lists them."""
    models = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
    return ", ".join(model["id"] for model in models)


if __name__ == "__main__":
    main()
