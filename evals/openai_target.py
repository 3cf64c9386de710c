"""`kotae eval --target openai:URL --model NAME`: any OpenAI-compatible endpoint scored on kotae's
retrieval and prompts. Retrieval, prompts, the abstention gate, answer cleaning and scoring are the
in-process target's; only generation goes to the endpoint (`kotae.evals.openai_engine`)."""

from collections.abc import Callable, Sequence

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.core.qa_jsonl import QAItem
from kotae.evals.openai_engine import OpenAIApi, OpenAIEngine
from kotae.evals.targets import AskOptions, InProcessTarget, TargetRun
from kotae.rag.pipeline import Pipeline
from kotae.rag.token_counter import TokenCounter

OPENAI_PREFIX = "openai:"


def openai_url(target: str) -> str | None:
    """The endpoint URL of an `openai:URL` target; None for any other target."""
    return target.removeprefix(OPENAI_PREFIX) if target.startswith(OPENAI_PREFIX) else None


def openai_target(
    url: str, model: str, api: OpenAIApi, concurrency: int, settings: Settings, local: Pipeline | None = None
) -> "OpenAITarget":
    """kotae's pipeline with generation on the endpoint: the collections and tokenizer of `local` when
    given, else those of `settings` (the generator's tokenizer only; its weights are not loaded)."""
    if local is not None:
        collections, count_tokens = local.collections, local.engine.count_tokens
    else:
        from transformers import AutoTokenizer

        from kotae.models.store import ModelStore
        from kotae.runtime import open_collections

        generator = ModelStore(settings.home).generator(settings.generator)
        collections, count_tokens = (
            open_collections(settings),
            TokenCounter(AutoTokenizer.from_pretrained(generator)),
        )
    engine = OpenAIEngine(url, model, count_tokens, api, concurrency)
    return OpenAITarget(Pipeline(collections, engine, settings), engine)


class OpenAITarget(InProcessTarget):
    """The in-process target on a pipeline whose engine is an `OpenAIEngine`: answers from the endpoint's
    model, with kotae's default prompt format (the endpoint has no kotae adapter)."""

    def __init__(self, pipeline: Pipeline, engine: OpenAIEngine) -> None:
        super().__init__(pipeline)
        self.engine = engine

    async def answer_all(
        self, items: Sequence[QAItem], ask: AskOptions, on_answer: Callable[[], None]
    ) -> TargetRun:
        parent = await self.engine.parent_model()
        run = await super().answer_all(items, ask, on_answer)
        if parent is not None:  # an adapter the endpoint serves on its base (vLLM's --lora-modules)
            run.model, run.adapter = parent, self.engine.model_name
        return run

    async def _adapter(self, ask: AskOptions) -> str | None:
        if ask.adapter:
            raise KotaeError(
                "--adapter names a kotae adapter; an OpenAI endpoint's model is named by --model"
            )
        await self.engine.check_health()
        return None

    def _device(self) -> str:
        return f"remote ({self.engine.url})"
