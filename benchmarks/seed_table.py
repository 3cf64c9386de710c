"""The seed's performance table, kotae's way, in one GPU lease (issue 7): the same questions (first --limit
of --data, contexts retrieved) through

  (1) HF transformers, one question at a time (the seed's method), bf16 + the default adapter merged in
  (2) `kotae eval` bf16, base model
  (3) `kotae eval` bf16 + the default adapter
  (4) `kotae eval` 4-bit (--w4-model) + the default adapter
  (5) `kotae serve` over HTTP (/v1/qa), --concurrency clients, default adapter
  (6) vLLM's own OpenAI server (/v1/completions) with the same adapter, on kotae's prompts, same clients

    python benchmarks/seed_table.py --data data/qa/jsquad-valid.jsonl --out runs/seed-table \\
        --w4-model /tmp/kotae-home/models/gemma-3-270m-w4a16

Each stage runs in a process of its own (GPU memory is freed between, and vLLM engines cannot share a
card's reservation), sampled by nvidia-smi every 0.2 s for its peak GPU memory. A finished stage is saved
at once in --out/stages/ and skipped when the command runs again; --out/table.md and results.json are
rewritten after every stage. Prompts are built once by kotae's own code (retrieval + make_prompt) into
--out/prompts.jsonl, so (1) and (6) see exactly the bytes kotae sends to vLLM.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

STAGES = (
    "prompts",
    "hf",
    "eval-bf16",
    "eval-adapter",
    "eval-w4-adapter",
    "eval-bnb-adapter",
    "serve",
    "vllm",
)
TITLES = {
    "prompts": "(0) retrieval + prompts (kotae's pipeline), once for all stages",
    "hf": "(1) HF transformers, one question at a time, bf16 + adapter (merged)",
    "eval-bf16": "(2) `kotae eval` bf16, no adapter",
    "eval-adapter": "(3) `kotae eval` bf16 + default adapter",
    "eval-w4-adapter": "(4) `kotae eval` 4-bit W4A16 + default adapter",
    "eval-bnb-adapter": "(4b) `kotae eval` bitsandbytes NF4 (vLLM quantizes at load) + default adapter",
    "serve": "(5) `kotae serve` /v1/qa over HTTP + default adapter",
    "vllm": "(6) vLLM OpenAI server /v1/completions + same adapter, kotae's prompts",
}
GPU_SAMPLE_S = 0.2
READY_TIMEOUT_S = 900.0
REQUEST_TIMEOUT_S = 600.0


class StageResult(BaseModel):
    """One row of the table, as a stage's process reports it (plus the driver's GPU peak)."""

    stage: str
    status: str = "done"
    """`done`, `failed` or `skipped`."""
    note: str | None = None
    n: int | None = None
    """Questions this stage answered."""
    exact: float | None = None
    partial: float | None = None
    char_f1: float | None = None
    wall_s: float | None = None
    """First question sent to last answer received: engine start excluded."""
    questions_per_s: float | None = None
    start_s: float | None = None
    """Model load / engine start / server readiness, reported apart from the questions' wall."""
    extrapolated_s: float | None = None
    """(1) only: the wall for all --limit questions at the measured rate."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    prompt_tokens_mean: float | None = None
    gpu_peak_mb: float | None = None
    gpu_source: str | None = None
    stage_s: float | None = None
    """The whole process, start to exit."""


# -- the table ------------------------------------------------------------------------------------------


def _cell(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


def markdown_table(results: Sequence[StageResult], context: str) -> str:
    """The table for docs/BENCHMARKS.md, then each target's verdict."""
    lines = [
        context,
        "",
        "| stage | n | exact | partial | char-F1 | wall s | q/s | start s | p50 / p99 ms | GPU peak MB "
        "| notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        wall = _cell(r.wall_s, 2)
        if r.extrapolated_s is not None:
            wall += f" (→ {r.extrapolated_s:,.0f} for all, extrapolated from {r.n})"
        latency = (
            "–" if r.latency_p50_ms is None else f"{r.latency_p50_ms:,.0f} / {_cell(r.latency_p99_ms, 0)}"
        )
        note = r.note or ""
        if r.status != "done":
            note = f"**{r.status}**: {note}"
        lines.append(
            f"| {TITLES.get(r.stage, r.stage)} | {r.n or '–'} | {_cell(r.exact, 3)} | {_cell(r.partial, 3)} "
            f"| {_cell(r.char_f1, 3)} | {wall} | {_cell(r.questions_per_s, 2)} | {_cell(r.start_s)} "
            f"| {latency} | {_cell(r.gpu_peak_mb, 0)} | {note} |"
        )
    lines += ["", *target_lines({r.stage: r for r in results if r.status == "done"})]
    return "\n".join(lines) + "\n"


def target_lines(done: dict[str, StageResult]) -> list[str]:
    """Issue 7's targets against the measured rows; a target whose rows are missing says so."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = ["Targets (issue 7):", ""]
    w4, hf = done.get("eval-w4-adapter"), done.get("hf")
    if w4 and w4.wall_s is not None:
        lines.append(
            f"- (4) end to end ≤ 3 s: {w4.wall_s:.2f} s for {w4.n} questions — {verdict(w4.wall_s <= 3)}"
        )
    else:
        lines.append("- (4) ≤ 3 s: not measured")
    if w4 and hf and w4.questions_per_s and hf.questions_per_s:
        speedup = w4.questions_per_s / hf.questions_per_s
        lines.append(f"- (4) ≥ 200× (1): {speedup:,.0f}× (q/s against q/s) — {verdict(speedup >= 200)}")
    else:
        lines.append("- (4) ≥ 200× (1): not measured")
    serve, bare = done.get("serve"), done.get("vllm")
    if serve and bare and serve.questions_per_s and bare.questions_per_s:
        share = serve.questions_per_s / bare.questions_per_s
        lines.append(f"- (5) ≥ 90% of (6)'s throughput: {share:.0%} — {verdict(share >= 0.9)}")
        if serve.latency_p99_ms and bare.latency_p99_ms:
            ratio = serve.latency_p99_ms / bare.latency_p99_ms
            lines.append(f"- (5) p99 ≤ 1.5× (6)'s: {ratio:.2f}× — {verdict(ratio <= 1.5)}")
    else:
        lines.append("- (5) against (6): not measured")
    bf16 = done.get("eval-adapter")
    for quantized, row in ((w4, "(4)"), (done.get("eval-bnb-adapter"), "(4b)")):
        what = f"- {row} 4-bit within 1 point of bf16"
        if quantized and bf16 and quantized.exact is not None and bf16.exact is not None:
            points = (quantized.exact - bf16.exact) * 100
            lines.append(f"{what} (exact, {row} − (3)): {points:+.1f} — {verdict(abs(points) <= 1)}")
        else:
            lines.append(f"{what}: not measured")
    return lines


def load_results(out: Path) -> list[StageResult]:
    found = {path.stem: path for path in (out / "stages").glob("*.json")}
    return [StageResult.model_validate_json(found[s].read_text()) for s in STAGES if s in found]


def write_report(out: Path, context: str) -> str:
    from kotae.core.durable import atomic_text

    results = load_results(out)
    table = markdown_table(results, context)
    with atomic_text(out / "table.md") as stream:
        stream.write(table)
    with atomic_text(out / "results.json") as stream:
        stream.write(json.dumps([r.model_dump() for r in results], indent=2, ensure_ascii=False) + "\n")
    return table


# -- the driver: one process per stage ----------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def stage_env(args: argparse.Namespace, stage: str) -> dict[str, str]:
    """Every engine gets the same share of the card (vLLM reserves it whole at start), or, without
    --gpu-memory-utilization, memory sized to the model."""
    env = dict(os.environ, KOTAE_MAX_TOKENS=str(args.max_tokens))
    if args.gpu_memory_utilization is not None:
        env["KOTAE_GPU_MEMORY_UTILIZATION"] = str(args.gpu_memory_utilization)
    if stage == "eval-w4-adapter":
        env["KOTAE_GENERATOR"] = str(args.w4_model)
    if stage == "eval-bnb-adapter":
        env["KOTAE_QUANTIZATION"] = "bitsandbytes"
    return env


def run_stage_process(args: argparse.Namespace, stage: str) -> StageResult:
    from kotae.evals.memory import GpuMemoryMonitor

    reported = args.out / "stages" / f".{stage}.worker.json"
    reported.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--run-stage", stage]
    started = time.perf_counter()
    with GpuMemoryMonitor(GPU_SAMPLE_S) as gpu:
        code = subprocess.run(command, env=stage_env(args, stage), check=False).returncode
    if reported.exists():
        result = StageResult.model_validate_json(reported.read_text())
    else:
        result = StageResult(stage=stage, status="failed", note=f"exit code {code}; see the log above")
    result.gpu_peak_mb, result.gpu_source = gpu.peak_mb, gpu.source
    result.stage_s = time.perf_counter() - started
    return result


def drive(args: argparse.Namespace) -> None:
    from kotae.core.durable import atomic_text

    (args.out / "stages").mkdir(parents=True, exist_ok=True)
    context = (
        f"{datetime.now():%Y-%m-%d}, {gpu_name()}; first {args.limit} questions of {args.data.name}, "
        f"contexts retrieved; greedy, max_tokens {args.max_tokens}; {memory_note(args)}; "
        f"HTTP stages at {args.concurrency} concurrent clients. "
        f"`python benchmarks/seed_table.py {' '.join(sys.argv[1:])}`"
    )
    for stage in args.stages:
        saved = args.out / "stages" / f"{stage}.json"
        if saved.exists() and StageResult.model_validate_json(saved.read_text()).status != "failed":
            log(f"{stage}: already done ({saved}), skipped")
            continue
        if stage == "eval-w4-adapter" and not (args.w4_model and (args.w4_model / "config.json").exists()):
            result = StageResult(stage=stage, status="skipped", note=f"no 4-bit model at {args.w4_model}")
        else:
            log(f"{stage}: starting — {TITLES[stage]}")
            result = run_stage_process(args, stage)
        log(f"{stage}: {result.status} {result.model_dump(exclude_none=True)}")
        with atomic_text(saved) as stream:  # a failed stage shows in the table and runs again next time
            stream.write(result.model_dump_json(indent=2) + "\n")
        write_report(args.out, context)
    print(write_report(args.out, context), flush=True)


def memory_note(args: argparse.Namespace) -> str:
    if args.gpu_memory_utilization is None:
        return "GPU memory sized to the model (vLLM's server gets the KV cache kotae's server reserves)"
    return (
        f"every vLLM engine at gpu_memory_utilization {args.gpu_memory_utilization} "
        "(GPU peak is mostly that reservation)"
    )


def vllm_memory_args(args: argparse.Namespace, model: Path) -> list[str]:
    """vLLM's server gets the share of the card kotae gets, or the KV cache kotae's server reserves."""
    if args.gpu_memory_utilization is not None:
        return ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    from kotae.core.config import get_settings
    from kotae.rag.gpu_memory import plan_gpu_memory
    from kotae.rag.scheduler_limits import scheduler_limits

    settings = get_settings()
    sequences = scheduler_limits(settings, "serve", on_gpu=True).max_num_seqs
    assert sequences is not None
    return ["--kv-cache-memory-bytes", str(plan_gpu_memory(model, settings, sequences).kv_cache_bytes)]


def gpu_name() -> str:
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        return f"1× {names[0].strip()}"
    except (OSError, subprocess.CalledProcessError):
        return "no GPU (nvidia-smi not found)"


# -- the stages (each in its own process) ---------------------------------------------------------------


def read_prompts(args: argparse.Namespace) -> list[dict]:
    path = args.out / "prompts.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the `prompts` stage first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def scored(stage: str, predictions: Sequence[str], rows: Sequence[dict], **figures: object) -> StageResult:
    from kotae.rag.metrics import score_answer

    scores = [score_answer(p, row["answers"]) for p, row in zip(predictions, rows, strict=True)]
    n = len(scores)
    return StageResult(
        stage=stage,
        n=n,
        exact=sum(s.exact for s in scores) / n,
        partial=sum(s.partial for s in scores) / n,
        char_f1=sum(s.char_f1 for s in scores) / n,
        **figures,
    )


def stage_prompts(args: argparse.Namespace) -> StageResult:
    """As `kotae eval` builds them (evals/targets.py): max(20, top_k) passages ranked, the first top_k
    in the prompt, in the format `--adapter` was trained in."""
    from transformers import AutoTokenizer

    from kotae.adapters.metadata import read_metadata
    from kotae.core.config import get_settings
    from kotae.core.durable import atomic_text
    from kotae.evals.datasets import load_dataset
    from kotae.models.store import ModelStore
    from kotae.rag.metrics import recall_depth
    from kotae.rag.pipeline import make_prompt
    from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, Prompter
    from kotae.runtime import open_retriever

    settings = get_settings()
    items = load_dataset(args.data, args.limit)
    started = time.perf_counter()
    retriever = open_retriever(settings)
    tokenizer = AutoTokenizer.from_pretrained(ModelStore(settings.home).generator(settings.generator))
    start_s = time.perf_counter() - started

    def count_tokens(text: str) -> int:  # as VLLMEngine.count_tokens counts
        return len(tokenizer.encode(text, add_special_tokens=False))

    # In the format the adapter was trained in, as the server writes its prompts.
    prompt_format = read_metadata(settings.adapter_dir / args.adapter).prompt_format if args.adapter else None
    prompter = Prompter(prompt_format or DEFAULT_PROMPT_FORMAT, tokenizer)

    started = time.perf_counter()
    rankings = retriever.retrieve_many([i.question for i in items], recall_depth(settings.top_k))
    prompts = [
        make_prompt(
            i.question,
            [h.passage for h in hits[: settings.top_k]],
            count_tokens,
            settings.context_token_budget,
            prompter,
        )
        for i, hits in zip(items, rankings, strict=True)
    ]
    wall_s = time.perf_counter() - started
    with atomic_text(args.out / "prompts.jsonl") as stream:
        for item, prompt in zip(items, prompts, strict=True):
            row = {
                "qid": item.qid,
                "question": item.question,
                "answers": list(item.answers),
                "prompt": prompt,
            }
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    return StageResult(
        stage="prompts",
        n=len(items),
        wall_s=wall_s,
        questions_per_s=len(items) / wall_s,
        start_s=start_s,
        prompt_tokens_mean=sum(len(tokenizer.encode(p)) for p in prompts) / len(prompts),
        note=f"retrieval {settings.retrieval}, top {settings.top_k}, prompt tokens with BOS",
    )


def stage_hf(args: argparse.Namespace) -> StageResult:
    """The seed's loop: one prompt at a time through `generate`, greedy, the same stop rule."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotae.core.config import get_settings
    from kotae.models.store import ModelStore
    from kotae.rag.prompt import ANSWER_STOPS, clean_answer

    settings = get_settings()
    rows = read_prompts(args)
    subset = rows[: args.hf_limit]
    started = time.perf_counter()
    model_dir = ModelStore(settings.home).generator(settings.generator)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to("cuda")
    adapter_dir = settings.adapter_dir / args.adapter
    # Merged: the adapter costs HF nothing per token, as the seed's fine-tuned model did.
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().eval()
    start_s = time.perf_counter() - started
    predictions, prompt_tokens = [], []
    started = time.perf_counter()
    with torch.inference_mode():
        for number, row in enumerate(subset, 1):
            inputs = tokenizer(row["prompt"], return_tensors="pt").to("cuda")
            output = model.generate(
                **inputs,
                max_new_tokens=args.max_tokens,
                do_sample=False,
                stop_strings=list(ANSWER_STOPS),
                tokenizer=tokenizer,
            )
            new = output[0, inputs["input_ids"].shape[1] :]
            predictions.append(clean_answer(tokenizer.decode(new, skip_special_tokens=True)))
            prompt_tokens.append(inputs["input_ids"].shape[1])
            if number % 25 == 0:
                log(f"hf: {number}/{len(subset)} in {time.perf_counter() - started:.1f} s")
    wall_s = time.perf_counter() - started
    rate = len(subset) / wall_s
    return scored(
        "hf",
        predictions,
        subset,
        wall_s=wall_s,
        questions_per_s=rate,
        start_s=start_s,
        extrapolated_s=len(rows) / rate if len(subset) < len(rows) else None,
        prompt_tokens_mean=sum(prompt_tokens) / len(prompt_tokens),
        note=f"first {len(subset)} of {len(rows)} questions; adapter {args.adapter!r} merged (peft)",
    )


def stage_eval(args: argparse.Namespace, stage: str) -> StageResult:
    """`kotae eval` itself (its runner, in this process): its metrics.json gives every figure."""
    from kotae.evals.config import EvalConfig
    from kotae.evals.runner import run_eval

    adapter = "" if stage == "eval-bf16" else args.adapter
    run_dir = args.out / "runs" / stage
    if (run_dir / "metrics.json").exists():
        (run_dir / "metrics.json").unlink()  # a half-finished earlier attempt
    config = EvalConfig(data=args.data, adapter=adapter, limit=args.limit, out=run_dir, label=stage)
    metrics = run_eval(config).metrics
    speed, generate = metrics.speed, metrics.speed.generate
    return StageResult(
        stage=stage,
        n=metrics.run.n,
        exact=metrics.answer.exact,
        partial=metrics.answer.partial,
        char_f1=metrics.answer.char_f1,
        wall_s=speed.wall_s,
        questions_per_s=speed.questions_per_s,
        start_s=speed.load_s,
        latency_p50_ms=None if generate is None else generate.p50_ms,
        prompt_tokens_mean=speed.prompt_tokens_mean,
        note=(
            f"{metrics.run.quantization}, adapter {metrics.run.adapter}; retrieve p50 "
            f"{_cell(metrics.speed.retrieve.p50_ms if metrics.speed.retrieve else None, 2)} ms/question "
            f"(batched); {speed.batches} retrieval batches, stage ms {speed.batch_stages_ms}; "
            f"finish {metrics.finish_reasons}; run dir {run_dir}"
        ),
    )


async def send_all(
    count: int, concurrency: int, post: Callable[[int], "asyncio.Future[str]"]
) -> tuple[list[str], list[float], float]:
    """`post(i)` for every i, `concurrency` in flight; (texts, latencies ms, wall s)."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(index: int) -> str:
        async with gate:
            started = time.perf_counter()
            text = await post(index)
            latencies.append((time.perf_counter() - started) * 1000)
            return text

    started = time.perf_counter()
    texts = list(await asyncio.gather(*(one(i) for i in range(count))))
    return texts, latencies, time.perf_counter() - started


def start_server(command: list[str], ready_url: str, log_path: Path) -> tuple[subprocess.Popen, float]:
    """Start a server process and wait until `ready_url` answers 200; (process, seconds to ready)."""
    import httpx

    started = time.perf_counter()
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(ready_url, timeout=5).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.terminate()
    raise SystemExit(f"{ready_url} not ready after {READY_TIMEOUT_S:.0f} s; see {log_path}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()


def stage_http(args: argparse.Namespace, stage: str) -> StageResult:
    """(5) kotae's /v1/qa with questions, or (6) vLLM's /v1/completions with kotae's prompts."""
    import httpx

    from kotae.rag.prompt import ANSWER_STOPS, clean_answer

    rows = read_prompts(args)
    host = "127.0.0.1"
    if stage == "serve":
        port = args.kotae_port
        command = [sys.executable, "-c", "from kotae.cli import main; main()", "serve", "--host", host]
        command += ["--port", str(port)]
        ready = "/readyz"
    else:
        from kotae.core.config import get_settings
        from kotae.models.store import ModelStore

        settings = get_settings()
        port = args.vllm_port
        ready = "/health"
        model = ModelStore(settings.home).generator(settings.generator)
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model),
            "--served-model-name", "base",
            "--host", host, "--port", str(port),
            "--max-model-len", str(settings.max_model_len),
            *vllm_memory_args(args, model),
            "--enable-prefix-caching",
            "--enable-lora", "--max-loras", str(settings.max_loras),
            "--max-lora-rank", str(settings.max_lora_rank),
            "--lora-modules", f"{args.adapter}={settings.adapter_dir / args.adapter}",
        ]  # fmt: skip
    base = f"http://{host}:{port}"
    process, start_s = start_server(command, base + ready, args.out / f"{stage}-server.log")
    try:
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        client = httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S, limits=limits)
        prompt_tokens: list[int] = []
        errors: list[str] = []
        server_ms: dict[str, list[float]] = {"retrieve_ms": [], "generate_ms": []}
        """What kotae's server says each answer took (its `timings`)."""

        async def post(index: int) -> str:
            """The answer text; a failed request counts as an empty (wrong) answer."""
            row = rows[index]
            if stage == "serve":
                path = "/v1/qa"
                body = {"question": row["question"], "adapter": args.adapter}
            else:
                path = "/v1/completions"
                body = {"model": args.adapter, "prompt": row["prompt"], "stop": list(ANSWER_STOPS)}
            body |= {"max_tokens": args.max_tokens, "temperature": 0.0}
            try:
                reply = (await client.post(path, json=body)).raise_for_status().json()
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                return ""
            prompt_tokens.append(reply["usage"].get("prompt_tokens") or 0)
            if stage != "serve":
                return clean_answer(reply["choices"][0]["text"])
            for name, samples in server_ms.items():
                samples.append(reply["timings"][name])
            return reply["answer"]

        async def measure() -> tuple[list[str], list[float], float]:
            async with client:
                await post(0)  # warm-up: one-time costs (first LoRA use, kernels) are not load
                prompt_tokens.clear()
                for samples in server_ms.values():
                    samples.clear()
                return await send_all(len(rows), args.concurrency, post)

        predictions, latencies, wall_s = asyncio.run(measure())
        batches = retrieval_batches_note(httpx.get(base + "/metrics").text) if stage == "serve" else ""
    finally:
        stop_server(process)
    from kotae.evals.speed import percentile

    return scored(
        stage,
        predictions,
        rows,
        wall_s=wall_s,
        questions_per_s=len(rows) / wall_s,
        start_s=start_s,
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
        prompt_tokens_mean=sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else None,
        note=f"adapter {args.adapter!r}; start = process start to {ready} answering"
        + "".join(
            f"; server {name} p50 {percentile(samples, 50):.0f} / p99 {percentile(samples, 99):.0f}"
            for name, samples in server_ms.items()
            if samples
        )
        + batches
        + (f"; {len(errors)} requests failed, first: {errors[0]}" if errors else ""),
    )


def retrieval_batches_note(exposition: str) -> str:
    """What the server's shared retrieval batches cost over its life (warm-up included), from its
    `kotae_retrieval_*` metrics: batches, mean size, mean queue wait, and each stage's mean ms a batch."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.startswith("kotae_retrieval_") and sample.name.endswith(("_sum", "_count")):
                sums[sample.name, sample.labels.get("stage", "")] = sample.value
    batches = sums.get(("kotae_retrieval_batch_size_count", ""), 0)
    if not batches:
        return ""

    def mean(histogram: str, stage: str = "") -> float:
        return sums[f"{histogram}_sum", stage] / sums[f"{histogram}_count", stage]

    stages = ", ".join(
        f"{stage} {1000 * mean('kotae_retrieval_stage_seconds', stage):.1f}"
        for name, stage in sums
        if name == "kotae_retrieval_stage_seconds_sum"
    )
    return (
        f"; {batches:.0f} retrieval batches of {mean('kotae_retrieval_batch_size'):.1f}, queued "
        f"{1000 * mean('kotae_retrieval_queue_seconds'):.0f} ms; ms a batch: {stages}"
    )


def run_stage(args: argparse.Namespace) -> None:
    """Worker mode: run one stage and leave its result where the driver reads it."""
    from kotae.core.durable import atomic_text

    stage = args.run_stage
    result = StageResult(stage=stage, status="failed", note="the stage process ended early")
    try:
        if stage == "prompts":
            result = stage_prompts(args)
        elif stage == "hf":
            result = stage_hf(args)
        elif stage.startswith("eval-"):
            result = stage_eval(args, stage)
        else:
            result = stage_http(args, stage)
    except (Exception, SystemExit) as error:
        result.note = f"{type(error).__name__}: {error}"[:500]
        raise
    finally:
        with atomic_text(args.out / "stages" / f".{stage}.worker.json") as stream:
            stream.write(result.model_dump_json() + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/qa/jsquad-valid.jsonl"), help="QA file")
    parser.add_argument("--limit", type=int, default=980, help="first N questions")
    parser.add_argument("--out", type=Path, default=Path("runs/seed-table"), help="results folder")
    parser.add_argument("--hf-limit", type=int, default=150, help="questions for (1); the rest extrapolated")
    parser.add_argument("--w4-model", type=Path, default=None, help="4-bit model folder for (4)")
    parser.add_argument("--adapter", default="default", help="adapter name under KOTAE_ADAPTER_DIR")
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=None,
        help="share of the card for every vLLM engine (default: kotae sizes its engines to the model)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP clients for (5) and (6)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--kotae-port", type=int, default=8011)
    parser.add_argument("--vllm-port", type=int, default=8012)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="run only these")
    parser.add_argument("--run-stage", choices=STAGES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.run_stage:
        run_stage(arguments)
    else:
        drive(arguments)
