"""`wordcount`: the `top` most frequent words, counted in parts, merged exactly."""

from __future__ import annotations

import re
from collections import Counter

import pydantic

from herder.context import Context
from herder.tasktype import TaskType

WORD = re.compile(r"[a-z0-9']+")
MAX_TEXT = 64 * 1024 * 1024


class WordCountParams(pydantic.BaseModel):
    text: str = pydantic.Field(max_length=MAX_TEXT)
    parts: int = pydantic.Field(default=4, ge=1, le=10_000)
    top: int = pydantic.Field(default=10, ge=1, le=100_000)


def split_text(text: str, parts: int) -> list[str]:
    """Cut lower-cased text into about `parts` pieces, never inside a word.

    Lower-casing before cutting matters: some characters change length when lower-cased, so
    cutting first could split what the whole-text count sees as one word.
    """
    low = text.lower()
    size = max(1, -(-len(low) // parts))
    pieces: list[str] = []
    start = 0
    while start < len(low):
        cut = min(len(low), start + size)
        while cut < len(low) and WORD.fullmatch(low[cut]):
            cut += 1
        pieces.append(low[start:cut])
        start = cut
    return pieces or [""]


def top_words(counts: Counter[str], top: int) -> list[list[str | int]]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[word, n] for word, n in ranked[:top]]


class WordCount(TaskType):
    name = "wordcount"
    Params = WordCountParams

    def split(self, params: WordCountParams) -> list[str]:
        return split_text(params.text, params.parts)

    def execute(self, ctx: Context, part: str) -> dict[str, int]:
        counts = Counter(WORD.findall(part))
        ctx.progress(1, 1)
        return dict(counts)

    def aggregate(self, params: WordCountParams, results: list[dict[str, int]]) -> object:
        total: Counter[str] = Counter()
        for partial in results:
            total.update(partial)
        return top_words(total, params.top)
