"""Built-in task types: noop, sleep, primes, wordcount. Always registered."""

from herder.examples.basic import Noop, Sleep
from herder.examples.primes import Primes
from herder.examples.wordcount import WordCount

__all__ = ["Noop", "Primes", "Sleep", "WordCount"]
