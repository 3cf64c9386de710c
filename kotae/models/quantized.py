"""What `kotae quantize` records in the folder it writes: the model it was made from.

An adapter trained on that model serves on a GPTQ output too: GPTQ only rounds weights, so every layer
reads the activations the adapter was trained on and LoRA adds its 16-bit update unchanged. AWQ does not:
it divides each layer's input channels by scales folded into the layer before, so a LoRA A matrix trained
on the source reads rescaled inputs and its answers degrade (docs/RESULTS.md). The server reads the
source's hash here to accept, or to refuse with that reason.
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
    group_size: int | None = None
    """Weights per scale when not the scheme's own."""
    samples: int
    """Calibration samples used."""

    @property
    def keeps_activations(self) -> bool:
        """Whether each layer still reads the source's activations, so the source's adapters apply."""
        return self.method != "awq"


def read_quantize_record(folder: Path) -> QuantizeRecord | None:
    """What `kotae quantize` recorded in `folder`; None if it did not make it or the record is unreadable."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return QuantizeRecord.model_validate_json(path.read_bytes())
    except ValidationError:
        return None
