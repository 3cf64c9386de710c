"""Every N steps, answer a fixed probe set with the model being trained and log the answers beside the
loss: a loss that keeps falling can hide answers that stopped making sense."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback

from kotae.adapters.generation import greedy_answers
from kotae.adapters.report import ProbeRecord
from kotae.adapters.reporting import Reporters
from kotae.rag.metrics import score_answer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerControl, TrainerState, TrainingArguments


@dataclass(frozen=True, slots=True)
class Probe:
    question: str
    prompt: str
    """The exact prompt, as served (with contexts for SFT, without for the knowledge probe)."""
    answers: list[str]


class ProbeCallback(TrainerCallback):
    def __init__(
        self,
        probes: list[Probe],
        tokenizer: "PreTrainedTokenizerBase",
        every: int,
        log_dir: Path,
        reporters: Reporters,
        console: Console,
    ) -> None:
        self.probes = probes
        self.tokenizer = tokenizer
        self.every = every
        self.log_dir = log_dir
        self.reporters = reporters
        self.console = console
        self.history: list[ProbeRecord] = []
        self._last_loss: float | None = None
        self._writer: Any = None

    def on_log(
        self,
        args: "TrainingArguments",
        state: "TrainerState",
        control: "TrainerControl",
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            self._last_loss = logs["loss"]

    def on_step_end(
        self, args: "TrainingArguments", state: "TrainerState", control: "TrainerControl", **kwargs: Any
    ) -> None:
        if self.every and state.global_step % self.every == 0:
            self._probe(state, kwargs["model"])

    def on_train_end(
        self, args: "TrainingArguments", state: "TrainerState", control: "TrainerControl", **kwargs: Any
    ) -> None:
        if not self.history or self.history[-1].step != state.global_step:
            self._probe(state, kwargs["model"])
        if self._writer is not None:
            self._writer.close()

    def _probe(self, state: "TrainerState", model: Any) -> None:
        if not state.is_world_process_zero or not self.probes:
            return
        answers = greedy_answers(model, self.tokenizer, [p.prompt for p in self.probes])
        matches = [score_answer(a, p.answers).partial for a, p in zip(answers, self.probes, strict=True)]
        record = ProbeRecord(
            step=state.global_step, loss=self._last_loss, partial=sum(matches) / len(matches), answers=answers
        )
        self.history.append(record)
        self._to_terminal(record, matches)
        if self.reporters.tensorboard:
            self._to_tensorboard(record, matches)
        if self.reporters.wandb:
            self._to_wandb(record, matches)

    def _rows(self, record: ProbeRecord, matches: list[bool]) -> list[tuple[str, str, str, str]]:
        return [
            (probe.question, " / ".join(probe.answers), answer, "✓" if ok else "✗")
            for probe, answer, ok in zip(self.probes, record.answers, matches, strict=True)
        ]

    def _title(self, record: ProbeRecord) -> str:
        loss = f"{record.loss:.4f}" if record.loss is not None else "-"
        return f"probes at step {record.step} · loss {loss} · partial {record.partial:.2f}"

    def _to_terminal(self, record: ProbeRecord, matches: list[bool]) -> None:
        table = Table("question", "gold", "answer", "", title=self._title(record), title_justify="left")
        for row in self._rows(record, matches):
            table.add_row(*row)
        self.console.print(table)

    def _to_tensorboard(self, record: ProbeRecord, matches: list[bool]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
        lines = ["| question | gold | answer | |", "|---|---|---|---|"]
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
            for row in self._rows(record, matches)
        ]
        self._writer.add_text("probes", self._title(record) + "\n\n" + "\n".join(lines), record.step)
        self._writer.add_scalar("probes/partial", record.partial, record.step)
        self._writer.flush()

    def _to_wandb(self, record: ProbeRecord, matches: list[bool]) -> None:
        import wandb

        if wandb.run is None:
            return
        table = wandb.Table(columns=["question", "gold", "answer", "match"], data=self._rows(record, matches))
        wandb.log(
            {"probes/answers": table, "probes/partial": record.partial, "train/global_step": record.step}
        )
