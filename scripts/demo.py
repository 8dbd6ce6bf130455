"""What `make demo` runs: a master and two workers on this machine (SQLite in a temporary
directory), a real split-and-aggregate task or two with live progress, a cancel, then a clean stop.
Uses only herder's public API (and the CLI's progress display)."""

from __future__ import annotations

import codecs
import contextlib
import io
import time

from rich.console import Console
from rich.table import Table

from herder import LocalCluster
from herder.cli import follow

console = Console(highlight=False)


def zen_of_python() -> str:
    with contextlib.redirect_stdout(io.StringIO()):
        import this  # it prints the Zen on import; we only want its text
    return codecs.decode(this.s, "rot13")


def main() -> None:
    console.rule("[bold]herder demo")
    console.print("starting a master and 2 workers (python -m herder master / worker) ...")
    started = time.monotonic()
    with LocalCluster(workers=2, slots=1, log_level="warning") as client:
        console.print(f"up at {client.url} in {time.monotonic() - started:.1f} s; workers: "
                      + ", ".join(w["name"] for w in client.workers()))

        console.rule("primes below 2,000,000, in 8 parts")
        primes = client.submit("primes", {"limit": 2_000_000, "parts": 8})
        follow(primes, console)
        console.print(f"[bold]{primes.result():,}[/] primes (the known answer is 148,933)")

        console.rule("wordcount: the Zen of Python, 2,000 times, in 4 parts")
        text = (zen_of_python() + "\n") * 2000
        words = client.submit("wordcount", {"text": text, "parts": 4, "top": 8})
        follow(words, console)
        table = Table("word", "count")
        for word, count in words.result():
            table.add_row(word, f"{count:,}")
        console.print(table)

        console.rule("cancel: a task of two 30-second sleeps")
        sleeper = client.submit("sleep", {"seconds": 30, "parts": 2})
        deadline = time.monotonic() + 10
        while sleeper.status()["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        console.print(f"{sleeper.id} is {sleeper.status()['state']}; cancelling it")
        sleeper.cancel()
        final = sleeper.wait(timeout=10)
        console.print(f"{sleeper.id} ended [bold]{final['state']}[/]")

        console.rule("stopping")
    console.print("master and workers stopped. Try `herder up` and the tour in README.md.")


if __name__ == "__main__":
    main()
