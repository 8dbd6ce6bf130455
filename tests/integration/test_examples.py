"""Every built-in example gives the right answer when its subtasks are spread over 2 workers."""

from __future__ import annotations

import re
from collections import Counter

from herder import Client
from tests.integration.conftest import assert_healthy


def test_noop_returns_its_value(client: Client) -> None:
    value = {"a": [1, 2.5, "x", None, True]}
    assert client.submit("noop", {"value": value}).result(timeout=15) == value


def test_sleep_returns_parts(client: Client) -> None:
    handle = client.submit("sleep", {"seconds": 0.1, "parts": 4})
    assert handle.result(timeout=15) == 4
    status = handle.status()
    assert status["progress"]["fraction"] == 1.0
    assert status["progress"]["subtasks_done"] == 4


def test_primes_counts_right(client: Client) -> None:
    assert client.submit("primes", {"limit": 200_000}).result(timeout=30) == 17984
    assert client.submit("primes", {"limit": 1_000_000, "parts": 7}).result(timeout=30) == 78498
    assert client.submit("primes", {"limit": 2, "parts": 3}).result(timeout=30) == 0


def test_wordcount_matches_a_whole_text_count(client: Client) -> None:
    words = ["apple", "Banana", "cherry", "don't", "e2e", "fig"]
    text = " ".join(words[(i * 7 + i // 3) % len(words)] for i in range(5000))
    text += " Äpfel naïve, ÇA! banana."
    expected_counts = Counter(re.findall(r"[a-z0-9']+", text.lower()))
    expected = [
        [w, n] for w, n in sorted(expected_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    ]
    result = client.submit("wordcount", {"text": text, "parts": 6, "top": 5}).result(timeout=30)
    assert result == expected


def test_work_is_spread_over_both_workers(client: Client) -> None:
    handle = client.submit("whoami", {"parts": 8, "seconds": 0.2})
    pids = handle.result(timeout=30)
    assert len(set(pids)) == 2, pids
    assert_healthy(client)
