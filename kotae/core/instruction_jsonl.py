"""Instruction JSONL, one Alpaca-style record per line: `{instruction, input?, output}`, as Japanese
Alpaca and in-house instruction sets are written. Bad rows raise `InputError` naming the file and line."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kotae.core.errors import InputError
from kotae.core.jsonl import read_jsonl


@dataclass(frozen=True, slots=True)
class InstructionItem:
    instruction: str
    input: str
    """What the instruction works on; empty when the instruction stands alone."""
    output: str


def read_instruction_jsonl(path: Path) -> Iterator[tuple[int, InstructionItem]]:
    """(line number, item) for every non-blank line; `InputError(path, line, reason)` on the first bad one."""
    for number, row in read_jsonl(path):
        instruction, input_text, output = row.get("instruction"), row.get("input", ""), row.get("output")
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(path, number, "`instruction` must be a non-empty string")
        if not isinstance(input_text, str):
            raise InputError(path, number, "`input` must be a string")
        if not isinstance(output, str) or not output.strip():
            raise InputError(path, number, "`output` must be a non-empty string")
        yield number, InstructionItem(instruction.strip(), input_text.strip(), output.strip())
