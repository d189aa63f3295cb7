"""Built-in recurrent networks on PyTorch's fused kernels."""

from tbptt.models.recurrent import GRU, LSTM, Elman, RecurrentNetwork

__all__ = ["Elman", "GRU", "LSTM", "RecurrentNetwork"]
