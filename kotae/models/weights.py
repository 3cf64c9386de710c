"""A model folder's weight format, as eval runs record it: `compressed-tensors`, `gptq`, ..., or `bf16`."""

import json
from pathlib import Path

_DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def weights_format(folder: Path, quantization: str | None = None) -> str | None:
    """`quantization` when vLLM is asked to quantize at load, else the quantization method config.json
    declares, else its dtype (`bf16`); None when config.json says neither.

    Read from the folder rather than from the engine, so in-process vLLM and remote replicas serving the
    same folder answer alike.
    """
    if quantization:
        return quantization
    config = json.loads((Path(folder) / "config.json").read_text())
    method = (config.get("quantization_config") or {}).get("quant_method")
    if method:
        return str(method)
    # transformers writes `dtype` since 4.56, `torch_dtype` before.
    dtype = config.get("dtype") or config.get("torch_dtype")
    return _DTYPE_NAMES.get(dtype, dtype) if dtype else None
