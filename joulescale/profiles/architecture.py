"""A dense decoder's size from its Hugging Face ``config.json``: KV bytes per token and weights.

``joulescale profile generate`` derives a profile's KV fields from the same file the performance
database reads, so the two never disagree about the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class Architecture:
    """The numbers of a dense (Llama-like) decoder that fix its memory footprint."""

    name: str
    hidden_size: int
    layers: int
    attention_heads: int
    kv_heads: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    bytes_per_value: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.attention_heads

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token over all layers: layers x KV heads x head dim x 2 x bytes."""
        return self.layers * self.kv_heads * self.head_dim * 2 * self.bytes_per_value

    @property
    def parameters(self) -> int:
        """Embeddings, attention (Q, K, V, O), gated MLP (3 matrices), RMS norms, LM head."""
        h, kv = self.hidden_size, self.kv_heads * self.head_dim
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate_size + 2 * h
        embeddings = self.vocab_size * h * (1 if self.tied_embeddings else 2)
        return self.layers * per_layer + embeddings + h

    @property
    def weight_bytes(self) -> int:
        return self.parameters * self.bytes_per_value


def config_path(model: str | Path) -> Path:
    """``config.json`` itself, or the one inside a model directory."""
    path = Path(model)
    return path / "config.json" if path.is_dir() else path


def read_architecture(model: str | Path) -> Architecture:
    """Parse a dense Llama-like ``config.json``; a mixture-of-experts or odd config is refused."""
    path = config_path(model)
    with path.open("rb") as handle:
        raw = handle.read(_MAX_CONFIG_BYTES + 1)
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes, not a model config.json")
    config = json.loads(raw.decode("utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a JSON object")
    if any(key in config for key in ("num_local_experts", "num_experts", "n_routed_experts")):
        raise ValueError(f"{path}: mixture-of-experts models are not supported (dense decoders only)")

    def number(key: str) -> int:
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{path}: '{key}' must be a positive integer, got {value!r}")
        return value

    dtype = config.get("torch_dtype", "bfloat16")
    if dtype not in _BYTES:
        raise ValueError(f"{path}: torch_dtype {dtype!r} not one of {sorted(_BYTES)}")
    heads = number("num_attention_heads")
    architecture = Architecture(
        name=str(config.get("_name_or_path") or ""),
        hidden_size=number("hidden_size"),
        layers=number("num_hidden_layers"),
        attention_heads=heads,
        kv_heads=number("num_key_value_heads") if "num_key_value_heads" in config else heads,
        intermediate_size=number("intermediate_size"),
        vocab_size=number("vocab_size"),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        bytes_per_value=_BYTES[dtype],
    )
    if architecture.hidden_size % heads:
        raise ValueError(f"{path}: hidden_size is not a multiple of num_attention_heads")
    return architecture
