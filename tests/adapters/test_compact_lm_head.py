"""On a CPU, TRL's fused LM head projects only the labelled positions once kotae chooses its compact path,
and gives the same log-probabilities and gradients as when it projects every position."""

import torch
import trl.trainer.utils as trl_utils
from transformers import AutoModelForCausalLM
from trl.kernels import chunked_logprob

from kotae.adapters.compact_lm_head import project_only_labelled_positions


def fused_pass(model_dir, compact: bool, monkeypatch) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Rows the LM head projected, the per-token log-probabilities, and the LM head's gradient, for a batch
    whose labels cover 3 of its 2 × 24 positions."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model)
    with monkeypatch.context() as patched:
        # TRL's own choice first: a training earlier in this process chose the compact path for it.
        patched.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)
        if compact:
            project_only_labelled_positions()  # undone with the rest on leaving the context
        projected: list[int] = []
        apply = trl_utils._ChunkedLogProbFunction.apply

        def recording_apply(hidden, *args):
            projected.append(hidden.shape[0])
            return apply(hidden, *args)

        patched.setattr(trl_utils._ChunkedLogProbFunction, "apply", recording_apply)
        input_ids = torch.randint(
            0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1)
        )
        labels = torch.full_like(input_ids, -100)
        labels[0, 20:22] = input_ids[0, 20:22]
        labels[1, 23] = input_ids[1, 23]
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
    return projected, out.log_probs.detach(), model.get_output_embeddings().weight.grad.clone()


def test_the_cpu_projects_only_the_labelled_positions_with_the_same_results(tiny_gemma, monkeypatch):
    every_rows, every_logps, every_grad = fused_pass(tiny_gemma, False, monkeypatch)
    compact_rows, compact_logps, compact_grad = fused_pass(tiny_gemma, True, monkeypatch)
    assert every_rows == [2 * 23]  # TRL's own choice on a CPU: every position but the last of each row
    assert compact_rows == [3]
    assert torch.allclose(compact_logps, every_logps, atol=1e-5)
    assert (compact_logps != 0).sum() == 3
    # float32 sums of 3 rows against 46 round differently (about 1e-5 of the largest gradient on an AMD core)
    assert torch.allclose(compact_grad, every_grad, atol=1e-4 * every_grad.abs().max().item())


def test_gpus_keep_trls_own_choice(monkeypatch):
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)
    project_only_labelled_positions()
    cuda = torch.device("cuda")
    assert trl_utils._use_triton(cuda) == chunked_logprob._use_triton(cuda)
    assert trl_utils._use_triton(torch.device("cpu"))
