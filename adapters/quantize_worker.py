"""Runs llm-compressor for `kotae quantize`, in the interpreter that has it (see `quantize.py`).

A standalone script: it imports nothing from kotae (that environment need not have kotae's
dependencies), reads the job file that `kotae quantize` wrote, and saves a compressed-tensors
checkpoint that vLLM loads. Usage: python quantize_worker.py JOB.json
"""

import json
import sys


def main(job_path: str) -> None:
    with open(job_path, encoding="utf-8") as stream:
        job = json.load(stream)
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(job["model"])

    def tokenize(row: dict) -> dict:
        # The samples are whole served prompts and passages; BOS is added as vLLM adds it.
        return tokenizer(row["text"], max_length=job["max_seq_length"], truncation=True)

    calibration = Dataset.from_dict({"text": job["samples"]}).map(tokenize, remove_columns=["text"])
    oneshot(
        model=model,
        dataset=calibration,
        recipe=_recipe(job["method"], _quantized_layers(job["scheme"], job["group_size"])),
        max_seq_length=job["max_seq_length"],
        num_calibration_samples=len(job["samples"]),
    )
    model.save_pretrained(job["out"], save_compressed=True)
    tokenizer.save_pretrained(job["out"])


def _quantized_layers(scheme: str, group_size: int | None) -> dict:
    """The modifiers' arguments for the linear layers: the preset scheme, its weight groups resized."""
    # lm_head stays 16-bit: Gemma ties it to the embeddings, and 262k output rows are where 4 bits hurt most.
    if group_size is None:
        return {"targets": ["Linear"], "scheme": scheme, "ignore": ["lm_head"]}
    from compressed_tensors.quantization import preset_name_to_scheme

    layers = preset_name_to_scheme(scheme, ["Linear"])
    layers.weights.group_size = group_size
    return {"config_groups": {"group_0": layers}, "ignore": ["lm_head"]}


def _recipe(method: str, layers: dict) -> object:
    if method == "awq":
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        _skip_pinning_without_an_accelerator()
        # AWQ scales activation-salient channels, then round-to-nearest quantization of the scaled weights.
        return [AWQModifier(), QuantizationModifier(**layers)]
    from llmcompressor.modifiers.gptq import GPTQModifier

    return GPTQModifier(**layers)


def _skip_pinning_without_an_accelerator() -> None:
    """AWQ pins its cached activations for fast copies to the GPU, which torch refuses where there is none
    ("Cannot access accelerator device"); on a CPU-only machine there is nothing to copy to."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.accelerator.is_available():
        IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None


if __name__ == "__main__":
    main(sys.argv[1])
