"""Each loaded adapter is served in the prompt format its metadata records (the default without one)."""

import asyncio
import json
from pathlib import Path

from server_fixtures import BASE_MODEL, write_kotae_metadata

from kotae.core.config import Settings
from kotae.rag.pipeline import Pipeline
from kotae.runtime import load_adapters


class TableEngine:
    """Only the engine's adapter table: loading adapters needs nothing else of it."""

    model_name = BASE_MODEL
    model_path = None  # no hash: adapters are matched on their base model's name
    max_lora_rank = 16

    def __init__(self) -> None:
        self.adapters: dict[str, Path] = {}

    async def load_adapter(self, name: str, path: Path) -> None:
        self.adapters[name] = path


def write_adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": f"/models/{BASE_MODEL}"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def test_pipeline_writes_each_adapters_prompts_in_its_recorded_format(tmp_path):
    root = tmp_path / "adapters"
    write_kotae_metadata(write_adapter(root / "rwkv-style"), "0" * 64, prompt_format="rwkv")
    write_kotae_metadata(write_adapter(root / "chat"), "0" * 64, prompt_format="chat-template")
    older = write_adapter(root / "older")
    write_kotae_metadata(older, "0" * 64)
    metadata = json.loads((older / "kotae_adapter.json").read_text())
    del metadata["prompt_format"]  # written before adapters had formats
    (older / "kotae_adapter.json").write_text(json.dumps(metadata))
    write_adapter(root / "plain-peft")
    engine = TableEngine()
    pipeline = Pipeline(None, engine, Settings(_env_file=None))  # type: ignore[arg-type]

    asyncio.run(load_adapters(pipeline, Settings(_env_file=None, adapter_dir=root)))

    assert sorted(engine.adapters) == ["chat", "older", "plain-peft", "rwkv-style"]
    formats = {name: pipeline.prompt_format_of(name) for name in [*engine.adapters, None]}
    assert formats == {
        "rwkv-style": "rwkv",
        "chat": "chat-template",
        "older": "alpaca-ja",
        "plain-peft": "alpaca-ja",
        None: "alpaca-ja",
    }
