"""Model-family adapters for the streaming evaluator: one small module per family (see base.py).

`adapter_for(model)` picks the adapter by `config.model_type`; adding a family is one file plus its tests and
one line in FAMILIES. An image-text model that wraps a supported language model (image_text.py) streams through
that model's adapter.
"""

from __future__ import annotations

from sinktrain.stream.families.afmoe import AfmoeAdapter
from sinktrain.stream.families.apertus import ApertusAdapter
from sinktrain.stream.families.arcee import ArceeAdapter
from sinktrain.stream.families.base import (
    STATIC_ROPE_TYPES,
    FamilyAdapter,
    check_config,
    dense_bound,
    narrowest_window,
)
from sinktrain.stream.families.bitnet import BitNetAdapter
from sinktrain.stream.families.bloom import BloomAdapter
from sinktrain.stream.families.cohere import Cohere2Adapter, Cohere2MoeAdapter, CohereAdapter
from sinktrain.stream.families.dbrx import DbrxAdapter
from sinktrain.stream.families.deepseek_v3 import (
    DeepseekV2Adapter,
    DeepseekV3Adapter,
    DeepseekV32Adapter,
    MiniCPM3Adapter,
    Mistral4Adapter,
)
from sinktrain.stream.families.dots1 import Dots1Adapter
from sinktrain.stream.families.ernie4_5 import (
    Ernie4_5Adapter,
    Ernie4_5MoeAdapter,
    Ernie4_5VLMoeTextAdapter,
    PaddleOCRTextAdapter,
)
from sinktrain.stream.families.exaone4 import Exaone4Adapter, ExaoneMoeAdapter, Kolibri1Adapter
from sinktrain.stream.families.falcon import FalconAdapter
from sinktrain.stream.families.flex_olmo import FlexOlmoAdapter
from sinktrain.stream.families.gemma import GemmaAdapter
from sinktrain.stream.families.gemma2 import Gemma2Adapter
from sinktrain.stream.families.gemma3 import Gemma3Adapter
from sinktrain.stream.families.gemma3n import Gemma3nAdapter
from sinktrain.stream.families.gemma4 import Gemma4Adapter, Gemma4UnifiedTextAdapter
from sinktrain.stream.families.glm import GlmAdapter
from sinktrain.stream.families.glm4 import Glm4Adapter, Glm4vTextAdapter
from sinktrain.stream.families.glm4_moe import Glm4MoeAdapter, Glm4vMoeTextAdapter
from sinktrain.stream.families.gpt_neox import GPTNeoXAdapter
from sinktrain.stream.families.gpt_oss import GptOssAdapter
from sinktrain.stream.families.gptj import GptjAdapter
from sinktrain.stream.families.granite import (
    GraniteAdapter,
    GraniteMoeAdapter,
    GraniteMoeSwaAdapter,
    GraniteSwaAdapter,
    HyperClovaXAdapter,
)
from sinktrain.stream.families.helium import HeliumAdapter
from sinktrain.stream.families.image_text import LANGUAGE_MODEL_ATTRIBUTE, wrapped
from sinktrain.stream.families.laguna import LagunaAdapter
from sinktrain.stream.families.llama import DeepseekOcr2TextAdapter, LlamaAdapter
from sinktrain.stream.families.llama4 import Llama4Adapter
from sinktrain.stream.families.longcat_flash import LongcatFlashAdapter
from sinktrain.stream.families.mimo_v2_flash import MiMoV2FlashAdapter
from sinktrain.stream.families.minimax_m2 import MiniMaxM2Adapter
from sinktrain.stream.families.ministral import Ministral3Adapter, MinistralAdapter
from sinktrain.stream.families.mistral import MistralAdapter
from sinktrain.stream.families.mixtral import MixtralAdapter
from sinktrain.stream.families.molmo2 import Molmo2TextAdapter
from sinktrain.stream.families.mllama import MllamaTextAdapter
from sinktrain.stream.families.mpt import MptAdapter
from sinktrain.stream.families.nanochat import NanoChatAdapter
from sinktrain.stream.families.nemotron import NemotronAdapter
from sinktrain.stream.families.olmo import OlmoAdapter
from sinktrain.stream.families.olmo2 import Olmo2Adapter
from sinktrain.stream.families.olmo3 import Olmo3Adapter
from sinktrain.stream.families.olmoe import OlmoeAdapter
from sinktrain.stream.families.persimmon import PersimmonAdapter
from sinktrain.stream.families.phi import PhiAdapter
from sinktrain.stream.families.phi3 import Phi3Adapter
from sinktrain.stream.families.phimoe import PhimoeAdapter
from sinktrain.stream.families.qwen2 import Qwen2Adapter, Qwen2VLTextAdapter
from sinktrain.stream.families.qwen2_moe import Qwen2MoeAdapter
from sinktrain.stream.families.qwen3 import Qwen3Adapter, Qwen3VLMoeTextAdapter, Qwen3VLTextAdapter
from sinktrain.stream.families.qwen3_moe import FlintAdapter, HYV3Adapter, Qwen3MoeAdapter
from sinktrain.stream.families.seed_oss import SeedOssAdapter
from sinktrain.stream.families.smollm3 import SmolLM3Adapter
from sinktrain.stream.families.stablelm import StableLmAdapter
from sinktrain.stream.families.starcoder2 import Starcoder2Adapter
from sinktrain.stream.families.vaultgemma import VaultGemmaAdapter

FAMILIES: tuple[type[FamilyAdapter], ...] = (
    GPTNeoXAdapter, LlamaAdapter, MistralAdapter, Qwen2Adapter, Qwen3Adapter, GemmaAdapter, Gemma2Adapter,
    Gemma3Adapter, Phi3Adapter, Olmo2Adapter, Olmo3Adapter, GraniteAdapter, MixtralAdapter,
    Qwen2MoeAdapter, Qwen3MoeAdapter, OlmoeAdapter, GptOssAdapter, PhiAdapter, SmolLM3Adapter, StableLmAdapter,
    Starcoder2Adapter, CohereAdapter, Cohere2Adapter, GlmAdapter, Glm4Adapter, Exaone4Adapter, ApertusAdapter,
    ArceeAdapter, SeedOssAdapter, Ernie4_5Adapter, NemotronAdapter, MinistralAdapter, Ministral3Adapter,
    Qwen2VLTextAdapter, Qwen3VLTextAdapter, Qwen3VLMoeTextAdapter, FalconAdapter, MptAdapter,
    BloomAdapter, GraniteMoeAdapter, OlmoAdapter, HeliumAdapter, Glm4MoeAdapter, Ernie4_5MoeAdapter, PhimoeAdapter,
    MiniMaxM2Adapter, Dots1Adapter, VaultGemmaAdapter, FlexOlmoAdapter, Cohere2MoeAdapter, DeepseekV3Adapter,
    Llama4Adapter, DeepseekV2Adapter, AfmoeAdapter, NanoChatAdapter, ExaoneMoeAdapter,
    GraniteSwaAdapter, GraniteMoeSwaAdapter, Gemma4Adapter, GptjAdapter, Gemma3nAdapter,
    MllamaTextAdapter, Mistral4Adapter, DeepseekV32Adapter, HyperClovaXAdapter, Glm4vTextAdapter,
    Glm4vMoeTextAdapter, MiniCPM3Adapter, MiMoV2FlashAdapter, PersimmonAdapter, DbrxAdapter,
    BitNetAdapter, HYV3Adapter, LongcatFlashAdapter, Ernie4_5VLMoeTextAdapter, Kolibri1Adapter,
    LagunaAdapter, FlintAdapter, Gemma4UnifiedTextAdapter, PaddleOCRTextAdapter, DeepseekOcr2TextAdapter,
    Molmo2TextAdapter,
)


# Architectures that cannot stream exactly by construction, with the reason (instead of the generic list).
CANNOT_STREAM = {
    **dict.fromkeys(("hunyuan_v1_dense", "hunyuan_v1_moe", "hunyuan_vl", "hunyuan_vl_text"), (
        "normalizes queries and keys after the rotary embedding, with a learned per-dim weight, so its attention "
        "scores depend on absolute positions, not only on query-key distances as the block-parallel evaluator "
        "needs")),
    # State-space, convolution and linear-attention layers (alone or beside attention layers)
    **dict.fromkeys((
        "mamba", "mamba2", "falcon_mamba", "jamba", "bamba", "zamba", "zamba2", "falcon_h1", "nemotron_h",
        "granitemoehybrid", "bailing_hybrid", "olmo_hybrid", "lfm2", "lfm2_moe", "lfm3", "minimax", "kimi_linear",
        "qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "recurrent_gemma", "rwkv",
        "xlstm", "lara_mini", "zaya", "inkling_text", "inkling2_text", "inkling2_loop_text", "qwen4_exp",
        "qwen4_exp_text", "glm5_next", "glm5_next_text", "inkling2", "inkling2_loop", "inkling_mm_model", "lfm2_vl",
        "lfm3_vl", "nemotron_h_omni", "minicpmv4_6", "minicpmv4_7", "minicpm_ocr"), (
        "has recurrent layers (state-space, convolution or linear attention) whose state carries the whole history "
        "instead of a KV cache; StreamingLLM's cache, which the evaluator reproduces, bounds attention layers only")),
    "deepseek_v4": (
        "compresses blocks of earlier keys into summary entries (compressed sparse attention) that stand for the whole "
        "history; StreamingLLM's cache, which the evaluator reproduces, keeps no such entries"),
    # Learned or sinusoidal absolute positions added to the input embeddings
    **dict.fromkeys(("gpt2", "gpt-sw3", "gpt_neo", "gpt_bigcode", "opt", "xglm", "biogpt", "openai-gpt", "ctrl"), (
        "adds absolute position embeddings to its input, so a token's position is fixed when it enters the cache "
        "and cannot be re-assigned inside it as StreamingLLM's cache requires (rotary or ALiBi models can)")),
}


def supported_model_types() -> list[str]:
    """Every model_type that streams: the families' and the image-text wrappers' (around a supported family)."""
    return [t for cls in FAMILIES for t in cls.model_types] + list(LANGUAGE_MODEL_ATTRIBUTE)


def adapter_class(config) -> type[FamilyAdapter]:
    """The adapter for a config's model_type; ValueError listing the supported ones otherwise."""
    mtype = getattr(config, "model_type", None)
    if mtype in LANGUAGE_MODEL_ATTRIBUTE:
        text = getattr(config, "text_config", None)
        if getattr(text, "model_type", None) in LANGUAGE_MODEL_ATTRIBUTE:
            raise ValueError(f"the image-text model {mtype!r} wraps another image-text model ({text.model_type!r}); "
                             f"the streaming evaluator runs a wrapper around a language model only")
        try:
            return wrapped(adapter_class(text), mtype)
        except ValueError as e:
            raise ValueError(f"the image-text model {mtype!r} wraps a language model the streaming evaluator cannot "
                             f"run: {e}") from None
    for cls in FAMILIES:
        if mtype in cls.model_types:
            return cls
    if mtype in CANNOT_STREAM:
        raise ValueError(f"architecture {mtype!r} {CANNOT_STREAM[mtype]}; the streaming evaluator cannot run it")
    families = "; ".join(f"{c.family} ({', '.join(c.model_types)})" for c in FAMILIES)
    raise ValueError(f"unsupported architecture {mtype!r}; the streaming evaluator supports these families: "
                     f"{families}; and image-text models wrapping one of them ({', '.join(LANGUAGE_MODEL_ATTRIBUTE)})")


def language_config(config):
    """The config of the language model that streams (a multimodal wrapper's `text_config`)."""
    return adapter_class(config).language_config(config)


def adapter_for(model) -> FamilyAdapter:
    return adapter_class(model.config)(model)


__all__ = ["FAMILIES", "STATIC_ROPE_TYPES", "FamilyAdapter", "adapter_class", "adapter_for", "check_config",
           "language_config", "dense_bound", "narrowest_window", "supported_model_types"]
