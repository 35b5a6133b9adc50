"""Build Pythia-family GPT-NeoX models with an attention-sink variant.

- kind none / token: a stock `transformers.GPTNeoXForCausalLM`. The learnable sink token is only data
  (ids prepended to every sample) plus ordinary embedding rows, so the model stays stock.
- kind softmax1 / logit: `SinkGPTNeoXForCausalLM` (sink_gptneox.py), a thin subclass that routes attention
  through the sink attention functions (and, for `logit`, owns one learned scalar per head per layer). Its
  config type `sinktrain_gpt_neox` is registered with the Auto classes on `import sinktrain.model`, so
  `AutoModelForCausalLM.from_pretrained(folder)` loads it after that import (exports also carry the file as
  remote code for users without sinktrain).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from sinktrain.model import sink_gptneox as attention
from sinktrain.model_config import ModelConfig
from sinktrain.model.sink_gptneox import SinkGPTNeoXConfig, SinkGPTNeoXForCausalLM


def hf_config(cfg: ModelConfig) -> GPTNeoXConfig:
    """The transformers config for `cfg` (stock GPTNeoXConfig unless the variant changes attention)."""
    a = cfg.arch
    kwargs = dict(
        vocab_size=a.vocab_size,
        hidden_size=a.hidden_size,
        num_hidden_layers=a.num_layers,
        num_attention_heads=a.num_heads,
        intermediate_size=a.intermediate_size,
        hidden_act="gelu",
        max_position_embeddings=cfg.seq_len,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rotary_base,
                         "partial_rotary_factor": cfg.rotary_pct},
        use_parallel_residual=True,
        layer_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        initializer_range=cfg.init_std,
        bos_token_id=0,
        eos_token_id=0,
        # A cache is built on every forward unless this is off (transformers 5.x); generation turns it on.
        use_cache=False,
    )
    if cfg.sink.kind in attention.ATTN_IMPLEMENTATION:
        return SinkGPTNeoXConfig(sink_kind=cfg.sink.kind, **kwargs)
    return GPTNeoXConfig(**kwargs)


def model_class(cfg: ModelConfig):
    return SinkGPTNeoXForCausalLM if cfg.sink.kind in attention.ATTN_IMPLEMENTATION else GPTNeoXForCausalLM


def init_pythia_weights(model: GPTNeoXForCausalLM, cfg: ModelConfig) -> None:
    """Pythia initialisation: small_init N(0, sqrt(2/5d)) for every weight matrix and embedding,
    wang_init N(0, 2/(L sqrt d)) for the attention-output and MLP-output projections, zero biases,
    unit LayerNorms."""
    small, wang = cfg.init_std, cfg.output_init_std
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = wang if name.endswith(("attention.dense", "mlp.dense_4h_to_h")) else small
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


def build_model(cfg: ModelConfig, seed: int | None = 1234, attn_implementation: str = "sdpa") -> GPTNeoXForCausalLM:
    """A freshly initialised model for `cfg` (fp32). Same seed, same weights."""
    if seed is not None:
        torch.manual_seed(seed)
    hcfg = hf_config(cfg)
    if cfg.sink.kind not in attention.ATTN_IMPLEMENTATION:
        hcfg._attn_implementation = attn_implementation
    model = model_class(cfg)(hcfg)
    init_pythia_weights(model, cfg)
    return model


def compile_blocks(model: GPTNeoXForCausalLM) -> None:
    """torch.compile each transformer block in place (nn.Module.compile: parameter names, and so checkpoints and
    exports, stay the plain model's). The blocks share one code object, so they share one compiled graph.

    Why the blocks and not the whole body: transformers builds the attention mask outside the blocks, and only
    an eager call can see that the position ids are one unbroken range (no packed sequences) and so pass no
    mask at all; traced, it must assume packing and hands every layer a [B, 1, T, T] mask, which bars SDPA
    from its flash kernels (vanilla included). Embeddings, the mask and the final norm are a few small eager
    kernels; the loss runs after the body either way (Dynamo cannot trace liger-kernel's host-side .item())."""
    for block in model.base_model.layers:
        block.compile()


def save_model(model: GPTNeoXForCausalLM, out_dir) -> None:
    """save_pretrained (safetensors). For softmax1/logit models also the self-contained `sink_gptneox.py` and
    an `auto_map` to it, so `AutoModelForCausalLM.from_pretrained(out_dir, trust_remote_code=True)` loads the
    folder where sinktrain is not installed."""
    import shutil
    from pathlib import Path

    if isinstance(model, SinkGPTNeoXForCausalLM):
        module = Path(attention.__file__).stem
        model.config.auto_map = {
            "AutoConfig": f"{module}.SinkGPTNeoXConfig",
            "AutoModelForCausalLM": f"{module}.SinkGPTNeoXForCausalLM",
        }
    model.save_pretrained(out_dir, safe_serialization=True)
    if isinstance(model, SinkGPTNeoXForCausalLM):
        shutil.copyfile(attention.__file__, Path(out_dir) / Path(attention.__file__).name)
    # save_pretrained writes model.safetensors through a private temporary file (mode 0600); give every file
    # the mode a plain open() would (0644 under the usual umask 022), so others can read the export.
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(out_dir).iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total and non-embedding parameters (Pythia's convention: both embedding matrices excluded)."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return {"total": total, "non_embedding": total - emb}


def prepend_sink_tokens(input_ids: torch.Tensor, sink_ids: list[int]) -> torch.Tensor:
    """[batch, n] -> [batch, len(sink_ids) + n] with the sink ids in front of every row."""
    if not sink_ids:
        return input_ids
    sinks = torch.tensor(sink_ids, dtype=input_ids.dtype, device=input_ids.device)
    return torch.cat([sinks.expand(input_ids.shape[0], -1), input_ids], dim=1)


def lm_labels(input_ids: torch.Tensor, num_sink_tokens: int) -> torch.Tensor:
    """Labels for transformers' causal-LM loss (it shifts internally): -100 at sink positions, so no loss
    is taken on predicting a sink token. The first text token is predicted from the sink(s)."""
    labels = input_ids.clone()
    labels[:, :num_sink_tokens] = -100
    return labels
