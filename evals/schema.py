"""What an eval run writes: `metrics.json` (`EvalMetrics`) and one `PredictionRow` per line of
`predictions.jsonl`. `kotae eval compare` reads `metrics.json` back through the same types."""

from typing import Literal

from pydantic import BaseModel, Field

ContextsMode = Literal["retrieved", "given"]
IN_PROCESS = "inprocess"
"""The target that builds the pipeline in this process (any other target is a server's URL)."""
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
ROW_FILE = "row.md"
"""The run's markdown table row, for pasting."""


class RunInfo(BaseModel):
    label: str | None
    """Free text from `--label`, shown in comparisons."""
    model: str
    """Generator as served (folder name in-process, the server's `model` field over HTTP)."""
    adapter: str | None
    """LoRA adapter that answered; None is the base model."""
    quantization: str | None
    """Weight format: vLLM's quantization method, else the dtype (`bf16`); None when unknown (HTTP)."""
    dataset: str
    data_path: str
    n: int
    """Questions asked."""
    contexts: ContextsMode
    top_k: int
    """Passages put into each prompt."""
    retrieval_depth: int | None
    """Passages ranked per question for recall (max(20, top_k) in-process, top_k over HTTP); None when
    the contexts were given."""
    retrieval_mode: str | None
    target: str
    """`inprocess`, or the server's base URL."""
    device: str
    date: str
    """When the run started, ISO 8601 with time zone."""
    kotae_version: str
    prompt_version: str
    max_tokens: int
    temperature: float


class AnswerMetrics(BaseModel):
    """Means over all questions, 0–1; a failed request counts as a wrong answer. As in SQuAD 2.0, an
    unanswerable question scores 1 on each when the target abstained, else 0."""

    exact: float
    partial: float
    char_f1: float


class AbstentionMetrics(BaseModel):
    """SQuAD 2.0's split: answerable (HasAns) and unanswerable (NoAns) questions scored apart."""

    has_ans_n: int
    has_ans: AnswerMetrics | None
    """Scores over the answerable questions alone (an abstention scores 0); None without any."""
    has_ans_abstained: float | None
    """Share of the answerable questions the target abstained on."""
    no_ans_n: int
    no_ans_accuracy: float | None
    """Share of the unanswerable questions answered with `answerable: false`; None without any."""


class RetrievalMetrics(BaseModel):
    n: int
    """Questions scored: those with gold passage ids."""
    recall_at: dict[int, float]
    """recall@k for each k the ranking was deep enough to measure."""
    mrr: float
    """Mean reciprocal rank of the first gold passage within the ranking (0 when absent)."""


class StageStats(BaseModel):
    p50_ms: float
    p95_ms: float
    mean_ms: float
    note: str | None = None
    """How the figure was obtained, where it is not one measurement per question."""


class SpeedMetrics(BaseModel):
    load_s: float | None
    """Building the pipeline (models, index, engine start); None when it was built by the caller or
    runs elsewhere (HTTP)."""
    wall_s: float
    """From the first question submitted to the last answer received: the `runtime` column."""
    retrieved_s: float | None = None
    """In process, from the first question submitted to the last retrieval batch's prompts reaching the
    engine: the rest of `wall_s` is generation that no retrieval overlaps."""
    questions_per_s: float
    retrieve: StageStats | None
    generate: StageStats | None
    first_token: StageStats | None
    request: StageStats | None
    """Client-side round trip of one HTTP request (HTTP target only)."""
    prompt_tokens_mean: float | None
    completion_tokens_mean: float | None
    batch_stages_ms: dict[str, float] = Field(default_factory=dict)
    """In process, the stages of retrieving and writing prompts (`embed`, `dense`, `tokenize`, `bm25`,
    `fuse`, `read`, `prompt`), each one call per batch: milliseconds summed over the run's batches. `embed`
    is one call for the whole run, before the first batch."""
    batches: int | None = None
    """Batches the questions were retrieved in (in process)."""


class MemoryMetrics(BaseModel):
    peak_rss_mb: float | None
    """Peak resident memory of this process (getrusage); None over HTTP, where it would be the client's."""
    peak_rss_children_mb: float | None
    """Largest peak of a finished, reaped child (getrusage RUSAGE_CHILDREN), e.g. vLLM's engine core once
    shut down."""
    gpu_peak_mb: float | None
    """Peak GPU memory held for this run, as nvidia-smi reports it (`gpu_source` says how); None on CPU
    and over HTTP."""
    gpu_source: str | None


class EvalMetrics(BaseModel):
    run: RunInfo
    answer: AnswerMetrics
    abstention: AbstentionMetrics | None = None
    """HasAns and NoAns apart (None in runs recorded before kotae could abstain)."""
    retrieval: RetrievalMetrics | None
    """None when no question had gold passage ids or the contexts were given."""
    speed: SpeedMetrics
    memory: MemoryMetrics
    errors: int
    """Questions whose request failed (their prediction is empty)."""
    finish_reasons: dict[str, int]
    """How answers ended: `stop`, `length` (hit max_tokens), `repetition` (loop guard), `error`, …"""


class SourceRow(BaseModel):
    id: str
    title: str
    score: float


class PredictionRow(BaseModel):
    qid: str
    question: str
    golds: list[str]
    answerable: bool
    """Whether the question has an answer (false: a NoAns question, `golds` empty)."""
    prediction: str
    abstained: bool
    """The target said the passages do not hold the answer (`answerable: false`)."""
    sources: list[SourceRow]
    """Passages in the prompt, in rank order."""
    retrieved_ids: list[str] | None
    """The whole ranking recall was measured on (deeper than `sources` in-process)."""
    exact: bool
    partial: bool
    char_f1: float
    recall_at: dict[int, float] | None
    """None for NoAns questions, asked without their gold passages."""
    reciprocal_rank: float | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None
