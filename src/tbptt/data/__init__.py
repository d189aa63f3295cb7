"""Data as streams: layouts, text, time series, token files and long-dependency tasks.

- :mod:`tbptt.data.streams`: sequences laid out as B parallel streams (``Streams``,
  ``pack_sequences``, ``pad_sequences``), served as ``Batch`` windows with resets and masks;
- :mod:`tbptt.data.text`: character- and word-level vocabularies;
- :mod:`tbptt.data.series`: numeric time series from CSV or NumPy, normalisation;
- :mod:`tbptt.data.tokens`: memory-mapped token files and chunked tokenisation;
- :mod:`tbptt.data.tasks`: the adding, copy, delayed recall, temporal order, embedded
  Reber and Mackey-Glass tasks.
"""

from tbptt.data import tasks
from tbptt.data.series import Normalizer, Series, read_csv
from tbptt.data.streams import Batch, Streams, pack_sequences, pad_sequences
from tbptt.data.text import Vocabulary, read_text, split
from tbptt.data.tokens import build_vocabulary, open_tokens, write_tokens

__all__ = [
    "Batch",
    "Normalizer",
    "Series",
    "Streams",
    "Vocabulary",
    "build_vocabulary",
    "open_tokens",
    "pack_sequences",
    "pad_sequences",
    "read_csv",
    "read_text",
    "split",
    "tasks",
    "write_tokens",
]
