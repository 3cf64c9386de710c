"""SFT and CPT on a tiny random Gemma on CPU: the adapters load and answer on vLLM, the loss falls, the
metadata and report say what happened, and CPT → merge → SFT carries the forgetting check through."""

import json
import shutil
from pathlib import Path

import pytest
from brief_runs import BRIEF, RANK8, brief_sft
from rich.console import Console

from kotae.adapters.config import CPTRunConfig, LoraSpec, SFTRunConfig
from kotae.adapters.cpt import train_cpt
from kotae.adapters.merge import MERGE_FILE, merge_adapter
from kotae.adapters.metadata import read_metadata
from kotae.adapters.report import read_report
from kotae.adapters.rows import ExampleRow
from kotae.adapters.sft import train_sft
from kotae.adapters.training import save_adapter
from kotae.core.durable import file_sha256
from kotae.core.errors import KotaeError
from kotae.rag.engine_protocol import Sampling
from kotae.rag.prompt import PROMPT_VERSION

pytestmark = pytest.mark.slow  # every test here trains on the CPU
console = Console(width=120)

# A few steps over all six examples at a high rate: the tiny model learns most of the answers.
OVERFIT = dict(learning_rate=3e-2, max_steps=16, batch_size=6, grad_accumulation=1, logging_steps=2)


def test_sft_adapter_learns_the_answers_and_vllm_serves_it(
    tiny_gemma, examples_file, questions, tmp_path, served
):
    out = tmp_path / "sft"
    config = SFTRunConfig(
        base=tiny_gemma,
        out=out,
        examples=(examples_file,),
        lora=LoraSpec(r=8, alpha=32),
        eval_fraction=0.0,
        probe_every=8,
        probe_count=len(questions),
        **OVERFIT,
    )
    metadata = train_sft(config, console)

    report = read_report(out)
    assert report is not None
    assert report.losses[-1].loss < report.losses[0].loss - 2, report.losses
    assert [p.step for p in report.probes] == [8, 16]
    learned = report.probes[-1]
    assert learned.partial >= 0.5, learned.answers
    assert metadata == read_metadata(out)
    assert metadata.kind == "sft" and metadata.servable and metadata.prompt_version == PROMPT_VERSION
    assert metadata.data.rows == len(questions) and metadata.contexts is not None
    assert metadata.eval_metrics["probe_partial"] == learned.partial
    assert metadata.lora.r == 8 and metadata.hyperparameters["learning_rate"] == 3e-2
    assert {"adapter_config.json", "adapter_model.safetensors", "logs"} <= {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["sft"], "work and staging folders are cleaned up"

    served.run(served.engine.load_adapter("sft", out))
    answered = 0
    for row in _examples(examples_file):
        completion = served.run(served.engine.complete(row.prompt, Sampling(max_tokens=16), "sft"))
        base = served.run(served.engine.complete(row.prompt, Sampling(max_tokens=16)))
        assert completion.text != base.text, "the adapter changes what the base model says"
        # A learned answer ends where training ended it: at the blank line, which the served stops cut.
        answered += (completion.text, completion.finish_reason) == (row.answers[0], "stop")
    # The tiny model's margins are thin: vLLM's bf16 may flip a token the fp32 training model got right.
    assert answered >= len(questions) // 3, learned.answers


def test_sft_continues_an_adapter_from_its_weights_and_shape(
    tiny_gemma, examples_file, brief_rank8, tmp_path
):
    import torch
    from safetensors.torch import load_file

    first = read_metadata(brief_rank8)
    # At a vanishing learning rate the continued run ends where the first one did.
    second = brief_sft(
        tiny_gemma, tmp_path / "second", examples_file, init_adapter=brief_rank8, learning_rate=1e-12
    )

    assert second.lora == first.lora, "the adapter's own shape, not the config's default"
    weights = brief_rank8 / "adapter_model.safetensors"
    assert second.continued_from is not None and second.continued_from.sha256 == file_sha256(weights)
    started, ended = load_file(weights), load_file(tmp_path / "second" / "adapter_model.safetensors")
    assert started.keys() == ended.keys()
    lora_b = [name for name in started if "lora_B" in name]
    assert lora_b and all(started[name].abs().max() > 0 for name in lora_b), "a fresh LoRA starts at B = 0"
    for name, tensor in started.items():
        assert torch.allclose(ended[name], tensor, atol=1e-6), name


def test_an_adapter_trained_in_bf16_is_saved_in_bf16(tiny_gemma, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    for bf16, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        save_adapter(model, tmp_path / str(bf16), bf16)
        weights = load_file(tmp_path / str(bf16) / "adapter_model.safetensors")
        assert weights and {t.dtype for t in weights.values()} == {dtype}


def test_examples_tokenized_by_two_processes_train_alike(tiny_gemma, examples_file, brief_rank8, tmp_path):
    # `brief_rank8` tokenized its examples in the training process.
    brief_sft(tiny_gemma, tmp_path / "two", examples_file, lora=RANK8, tokenize_workers=2)
    losses = [[point.loss for point in read_report(run).losses] for run in (brief_rank8, tmp_path / "two")]
    assert losses[0] and losses[0] == losses[1]


def test_continuing_an_adapter_of_another_base_is_refused(tiny_gemma, examples_file, tmp_path):
    other = tmp_path / "other-base"
    shutil.copytree(tiny_gemma, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "comment": "another base"}))
    brief_sft(other, tmp_path / "first", examples_file)

    with pytest.raises(KotaeError, match="was trained on other-base"):
        brief_sft(tiny_gemma, tmp_path / "second", examples_file, init_adapter=tmp_path / "first")
    assert not (tmp_path / "second").exists()


def test_cpt_then_merge_then_sft_reports_the_forgetting_curve(
    tiny_gemma, data_dir, examples_file, tmp_path, served
):
    probe = data_dir / "probe.jsonl"
    cpt_out = tmp_path / "cpt"
    cpt = train_cpt(
        CPTRunConfig(
            base=tiny_gemma, out=cpt_out, text=data_dir / "passages.jsonl", knowledge_probe=probe, **BRIEF
        ),
        console,
    )
    assert cpt.kind == "cpt" and cpt.servable and cpt.lora.alpha == 64
    cpt_report = read_report(cpt_out)
    assert cpt_report and cpt_report.knowledge
    assert cpt_report.knowledge.before_cpt is not None and cpt_report.knowledge.after_cpt is not None
    served.run(served.engine.load_adapter("cpt", cpt_out))
    assert served.run(served.engine.complete("富士山は", Sampling(max_tokens=4), "cpt")).completion_tokens > 0

    merged = merge_adapter(tiny_gemma, cpt_out, tmp_path / "merged", console)
    _assert_merged_model_matches_adapter(tiny_gemma, cpt_out, merged)
    assert json.loads((merged / MERGE_FILE).read_text())["adapter_metadata"]["kind"] == "cpt"

    sft_out = tmp_path / "sft"
    sft = train_sft(
        SFTRunConfig(
            base=merged, out=sft_out, examples=(examples_file,), knowledge_probe=probe, probe_every=0, **BRIEF
        ),
        console,
    )
    knowledge = read_report(sft_out).knowledge
    assert knowledge.before_cpt == cpt_report.knowledge.before_cpt
    assert knowledge.after_cpt == cpt_report.knowledge.after_cpt
    assert knowledge.before_sft is not None and knowledge.after_sft is not None
    assert sft.base_model.name == "merged" and "knowledge_after_sft" in sft.eval_metrics


def test_cpt_with_embeddings_must_be_merged_and_stays_tied(tiny_gemma, data_dir, tmp_path):
    out = tmp_path / "cpt-embeddings"
    config = CPTRunConfig(
        base=tiny_gemma,
        out=out,
        text=data_dir / "passages.jsonl",
        train_embeddings=True,
        probe_every=0,
        **BRIEF,
    )
    metadata = train_cpt(config, console)
    assert not metadata.servable, "vLLM cannot load fully trained embeddings as LoRA"
    assert metadata.lora.modules_to_save == ("embed_tokens", "lm_head")

    merged = merge_adapter(tiny_gemma, out, tmp_path / "merged", console)
    import torch
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_gemma)
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert not torch.equal(model.model.embed_tokens.weight, base.model.embed_tokens.weight)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def _assert_merged_model_matches_adapter(base: Path, adapter: Path, merged: Path) -> None:
    """The merged folder loads on its own and computes what base + adapter computes."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert (merged / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    inputs = tokenizer("富士山は日本一高い山である。", return_tensors="pt")
    with torch.no_grad():
        expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)(
            **inputs
        ).logits
        actual = AutoModelForCausalLM.from_pretrained(merged)(**inputs).logits
    # The merged weights are stored in the base's bf16.
    assert torch.allclose(actual.float(), expected.float(), atol=0.1, rtol=0.05)


def _examples(path: Path) -> list[ExampleRow]:
    return [ExampleRow.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()]
