"""Training on a CPU projects only the labelled positions through the LM head, as it does on a GPU.

An SFT example's loss covers its answer, a few tokens after hundreds of prompt tokens, and the LM head is the
costliest projection of a small model with a large vocabulary (Gemma 3's 262k). TRL's fused LM head
(`trl.trainer.utils.add_fused_lm_head`, which `SFTTrainer` installs) projects only the positions with a label
on Triton devices; elsewhere it projects every position, so that compilers of fixed shapes (Neuron) do not
recompile for each batch. Eager PyTorch on a CPU has no such cost, so kotae chooses the compact path there
too: the same log-probabilities and gradients, without the prompt's logits.
"""

import torch
import trl.trainer.utils as trl_utils
from trl.kernels import chunked_logprob


def project_only_labelled_positions() -> None:
    """Make TRL's fused LM head take its compact path on CPU tensors too (for this process)."""
    # `_use_triton` decides nothing else in trl.trainer.utils; the kernel itself reads its own module's copy,
    # so on a CPU the projection still runs in PyTorch.
    trl_utils._use_triton = _compact


def _compact(device: torch.device) -> bool:
    return device.type == "cpu" or chunked_logprob._use_triton(device)
