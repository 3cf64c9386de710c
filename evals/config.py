"""One eval run's settings, as `kotae eval` takes them (its options are these fields)."""

from dataclasses import dataclass, field
from pathlib import Path

from kotae.evals.openai_engine import OpenAIApi
from kotae.evals.schema import IN_PROCESS, ContextsMode


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """One eval run, as `kotae eval` takes it."""

    data: Path
    """QA set: kotae QA JSONL, JAQKET/AIO JSONL, or a SQuAD-style JSON file or directory (detected)."""
    target: str = IN_PROCESS
    """`inprocess` builds the pipeline from settings in this process; a base URL (`http://host:8000`)
    asks a running kotae server's `/v1/qa`; `openai:URL` retrieves and writes prompts here and has the
    OpenAI-compatible endpoint at URL answer them with `model` (API key from $OPENAI_API_KEY)."""
    model: str | None = None
    """The endpoint's model, as it names it (its /v1/models; `openai:URL` targets only)."""
    openai_api: OpenAIApi = "completions"
    """How an `openai:URL` target is asked: `completions` (kotae's prompt as it is) or `chat` (the prompt as
    one user message, for endpoints that only chat)."""
    adapter: str | None = None
    """Adapter name; "" is the base model; unset leaves the choice to the target's default adapter
    (KOTAE_DEFAULT_ADAPTER in-process)."""
    contexts: ContextsMode = "retrieved"
    """`retrieved`: the pipeline retrieves; `given`: the dataset's own passages (in-process only)."""
    limit: int | None = field(default=None, metadata={"min": 1})
    """Ask only the first N questions of the file (in file order, so runs compare)."""
    out: Path | None = None
    """Run directory; default `runs/eval/<date>-<dataset>-<label or adapter>`."""
    concurrency: int = field(default=16, metadata={"min": 1})
    """Requests in flight at once (HTTP target); in-process, all questions go to vLLM at once."""
    top_k: int | None = field(default=None, metadata={"min": 1})
    """Passages in each prompt; default `KOTAE_TOP_K`. Retrieval ranks max(20, top_k) for recall@20."""
    label: str | None = None
    """Free text naming the run in comparisons."""
