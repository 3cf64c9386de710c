"""The forgetting check: does SFT wash away what CPT put in?

A knowledge probe is a QA file answerable only from the CPT text, asked WITHOUT context (the served
template with an empty 入力), so only what the weights hold can answer it. It is scored before and after
each run; CPT→merge→SFT gives before CPT, after CPT (on the merged model: before SFT) and after SFT, and
`retention` = after SFT / before SFT is the share of that knowledge SFT kept.

The score is partial match: a model that has not learned the answer format yet (before SFT) still
counts when the answer appears in what it writes.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from kotae.adapters.generation import greedy_answers
from kotae.adapters.probe_callback import Probe
from kotae.adapters.report import KnowledgeReport
from kotae.core.durable import file_sha256
from kotae.core.errors import InputError
from kotae.core.qa_jsonl import read_qa_jsonl
from kotae.rag.metrics import score_answer
from kotae.rag.prompt import Prompter

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class KnowledgeProbe:
    def __init__(self, path: Path, prompter: Prompter) -> None:
        self.path = path
        self.sha256 = file_sha256(path)
        self.rows = [row for _, row in read_qa_jsonl(path)]
        if not self.rows:
            raise InputError(path, None, "no questions")
        # The served prompt without passages (what `make_prompt` gives for none).
        self.prompts = [prompter.qa(row.question, []) for row in self.rows]

    def score(self, model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> float:
        """Share of the questions whose answer partially matches (kotae eval's normalization and rule)."""
        answers = greedy_answers(model, tokenizer, self.prompts)
        return sum(
            score_answer(a, row.answers).partial for a, row in zip(answers, self.rows, strict=True)
        ) / len(self.rows)

    def probes(self) -> list[Probe]:
        """The questions as a probe set, for watching the knowledge arrive while CPT trains."""
        return [Probe(r.question, p, list(r.answers)) for r, p in zip(self.rows, self.prompts, strict=True)]

    def report(self, **stages: float | None) -> KnowledgeReport:
        return KnowledgeReport(
            probe=str(self.path.resolve()),
            probe_sha256=self.sha256,
            questions=len(self.rows),
            **stages,
        )
