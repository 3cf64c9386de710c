"""Where the Python time of a py-spy recording goes (issue 20): per process and thread, the seconds each
function was on the stack (with what it called) and on top of it (itself), optionally only over the stacks
that pass through a given function, such as the engine core's loop or the eval's event loop.

The recording is py-spy's raw format with its child processes and threads apart (`scripts/gpu/gpu_path.sh`
makes one with `PYSPY`):

    py-spy record --subprocesses --threads --nonblocking --rate 200 --format raw -o eval.txt -- python3 …
    python benchmarks/pyspy_summary.py eval.txt.gz --rate 200 --within run_busy_loop --top 40

py-spy leaves out idle threads: a thread waiting for a lock, a socket or the GPU adds nothing, and neither
does one waiting for the interpreter's lock.
"""

import argparse
import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"(?P<function>.*?) \((?P<file>.*?):\d+\)$")


@dataclass(frozen=True, slots=True)
class Stack:
    process: str
    """The innermost `process PID:"command line"` frame: the process that was sampled."""
    thread: str
    frames: list[str]
    """Functions, outermost first, each `function (file)`, the file from its package on."""
    samples: int


def frame_name(frame: str) -> str:
    """`function (file)`, the file's path from after `site-packages/`; py-spy's line number left out."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['function']} ({match['file'].split('site-packages/')[-1]})"


def parse(line: str) -> Stack | None:
    """One line of py-spy's raw output (`frame;frame;… COUNT`); None for a line that is not one."""
    stack, _, count = line.rpartition(" ")
    if not stack or not count.isdigit():
        return None
    frames = stack.split(";")
    processes = [frame for frame in frames if frame.startswith("process ")]
    threads = [frame for frame in frames if frame.startswith("thread ")]
    process = re.sub(r'^process (\d+):"([^"]{0,80}).*', r"\1 \2", processes[-1]) if processes else "?"
    thread = re.sub(r"^thread \(\w+\):? ?", "", threads[-1]) if threads else "?"
    body = [frame_name(frame) for frame in frames if not frame.startswith(("process ", "thread "))]
    return Stack(process, thread or "?", body, int(count))


def summarize(lines: list[str], rate: float, within: str | None = None, top: int = 30) -> list[dict]:
    """Per process and thread, most sampled first: its seconds, and its `top` functions by inclusive and
    by self seconds. With `within`, only the stacks through a function whose name holds it."""
    seconds: Counter[tuple[str, str]] = Counter()
    inclusive: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    itself: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for line in lines:
        stack = parse(line)
        if stack is None or (within and not any(within in frame for frame in stack.frames)):
            continue
        key = (stack.process, stack.thread)
        seconds[key] += stack.samples
        for name in set(stack.frames):  # a recursive function counts once per sample
            inclusive[key][name] += stack.samples
        if stack.frames:
            itself[key][stack.frames[-1]] += stack.samples
    summary = []
    for (process, thread), samples in seconds.most_common():
        key = (process, thread)
        summary.append(
            {
                "process": process,
                "thread": thread,
                "s": samples / rate,
                "inclusive": [{"function": f, "s": n / rate} for f, n in inclusive[key].most_common(top)],
                "self": [{"function": f, "s": n / rate} for f, n in itself[key].most_common(top)],
            }
        )
    return summary


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        return stream.read().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recording", type=Path, help="py-spy's raw output (.txt or .txt.gz)")
    parser.add_argument("--rate", type=float, default=200, help="the samples a second it was recorded at")
    parser.add_argument("--within", help="only the stacks through a function whose name holds this")
    parser.add_argument("--top", type=int, default=30, help="functions listed per thread")
    parser.add_argument("--threads", type=int, default=8, help="threads listed, most sampled first")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    summary = summarize(read_lines(args.recording), args.rate, args.within, args.top)[: args.threads]
    if args.json:
        print(json.dumps(summary, indent=1, ensure_ascii=False))
        return
    for thread in summary:
        print(f"\n== {thread['s']:.2f} s  process {thread['process']}  thread {thread['thread']}")
        for kind in ("inclusive", "self"):
            print(f"  -- {kind}")
            for row in thread[kind]:
                print(f"  {row['s']:8.2f}  {row['function']}")


if __name__ == "__main__":
    main()
