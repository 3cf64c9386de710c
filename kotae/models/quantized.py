"""What `kotae quantize` records in the folder it writes: the model it was made from.

An adapter trained on that model serves on the quantized one too: the schemes are weight-only, so LoRA
is computed in 16 bits on top of the dequantized weights, unchanged. The server reads the source's hash
here to accept such adapters.
"""

from pathlib import Path

from pydantic import BaseModel, ValidationError

RECORD_FILE = "kotae_quantize.json"


class QuantizeRecord(BaseModel):
    model: str
    """The source model folder, resolved."""
    model_hash: str | None = None
    """`kotae.models.store.model_hash` of the source (absent in folders quantized before it was recorded)."""
    method: str
    scheme: str
    samples: int
    """Calibration samples used."""


def quantized_from_hash(folder: Path) -> str | None:
    """The hash of the model `folder` was quantized from; None when `folder` was not made by
    `kotae quantize` or its record predates the hash."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return QuantizeRecord.model_validate_json(path.read_bytes()).model_hash
    except ValidationError:
        return None
