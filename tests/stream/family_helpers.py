"""Tiny random models of every supported family, a small BPE tokenizer that fits their vocabulary, and an
independent float64 Llama written from the definition of the StreamingLLM cache."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from stream_helpers import BOOKS

VOCAB = 512
SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB,
             max_position_embeddings=1024, initializer_range=0.08)
DEFAULT_ROPE = {"rope_type": "default", "rope_theta": 10000.0}
MINISTRAL3_ROPE = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256,
                   "llama_4_scaling_beta": 0.5}
TOKEN_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)  # inside the tiny vocabulary
# Phi-4-mini's kind: partial rotary (12 of 16 dims: 6 factors each), short factors below the original context
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
            "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5], "long_factor": [1.5, 2.0, 3.0, 4.5, 6.0, 8.0]}

# A vision tower that text never reaches, as small as its config allows (CLIP's also names its type).
TINY_VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                   patch_size=14)
CLIP = dict(model_type="clip_vision_model", projection_dim=32)
QWEN_VISION = dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64)  # and GLM-V's

# name -> (config class name, overrides). Together they cover grouped-query and multi-head attention, tied and
# untied heads, rope_theta, static scaled RoPE (linear, llama3, YaRN), q/k/v biases, q/k RMSNorm (per head and
# over all heads), a head dim that is not hidden/heads, packed q/k/v, partial rotary, post-norms, scalar
# multipliers, soft-capped attention scores and logits, interleaved rotary, layers without rotary (NoPE), a rotary set
# per layer type, position-dependent query scaling, LongRoPE, multimodal RoPE, Falcon's fused layouts, and every
# supported image-text wrapper.
FAMILY_CASES = {
    "llama-gqa-tied": ("LlamaConfig", dict(num_key_value_heads=2, tie_word_embeddings=True,
                                           rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
    "llama-mha-untied-llama3": ("LlamaConfig", dict(num_key_value_heads=4, tie_word_embeddings=False, rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
    "llama-yarn": ("LlamaConfig", dict(num_key_value_heads=2, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64})),
    "llama-linear": ("LlamaConfig", dict(num_key_value_heads=1, rope_parameters={
        "rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})),
    # HyperCLOVA X: Granite's muP scalars (logits multiplied), post-norms on both branches (Peri-LN)
    "hyperclovax-peri-ln": ("HyperCLOVAXConfig", dict(num_key_value_heads=2, embedding_multiplier=2.0,
                                                      residual_multiplier=0.5, logits_scaling=0.5,
                                                      attention_multiplier=0.2, **TOKEN_IDS,
                                                      rope_parameters=DEFAULT_ROPE)),
    # MiMo-V2-Flash: sliding layers 1 and 3 (window wider than the streams) with twice the K/V heads and learned sink
    # logits, full layers without; a rotary base per layer kind on a third of each head; narrower, scaled values
    "mimo-v2-flash-sinks": ("MiMoV2FlashConfig", dict(
        num_hidden_layers=4, num_key_value_heads=1, head_dim=24, v_head_dim=12, sliding_window=128,
        attention_value_scale=0.7, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        n_group=1, topk_group=1, layer_types=["full_attention", "sliding_attention"] * 2, **TOKEN_IDS,
        rope_parameters={"full_attention": {**DEFAULT_ROPE, "partial_rotary_factor": 0.334},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10.0,
                                               "partial_rotary_factor": 0.334}})),
    # Persimmon: packed per-head q/k/v, LayerNorms on q and k per head, rotary on half of each head; Fuyu around it
    "persimmon-qk-layernorm": ("PersimmonConfig", dict(qk_layernorm=True, **TOKEN_IDS, rope_parameters={
        **DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    "fuyu-persimmon": ("FuyuConfig", dict(patch_size=4, image_token_id=5, text_config=dict(
        model_type="persimmon", qk_layernorm=True, **TOKEN_IDS, rope_parameters={
            **DEFAULT_ROPE, "partial_rotary_factor": 0.5}))),
    # DBRX: MPT's names with grouped-query attention, rotary, clipped fused q/k/v and experts
    "dbrx-gqa-clipped": ("DbrxConfig", dict(d_model=64, n_heads=4, n_layers=2, max_seq_len=1024, vocab_size=VOCAB,
                                            attn_config=dict(kv_n_heads=2, clip_qkv=0.3, rope_theta=10000.0),
                                            ffn_config=dict(ffn_hidden_size=32, moe_num_experts=4, moe_top_k=2),
                                            initializer_range=0.08, **TOKEN_IDS)),
    # BitNet b1.58: RMSNorms on the attention output and inside the MLP
    "bitnet-sub-norms": ("BitNetConfig", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # Hunyuan 3: q/k norms per head, a dense first layer, then routed plus shared experts
    "hy-v3-moe": ("HYV3Config", dict(num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
                                     moe_intermediate_size=32, mlp_layer_types=["dense", "sparse"], **TOKEN_IDS,
                                     rope_parameters=DEFAULT_ROPE)),
    # Kolibri-1: EXAONE 4's attention (NoPE on the full layer 2) in GLM-4's layout with experts in every layer
    "kolibri1-nope": ("Kolibri1Config", dict(
        num_hidden_layers=3, num_key_value_heads=2, head_dim=16, sliding_window=128, num_experts=4,
        num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32, **TOKEN_IDS,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"], rope_parameters=DEFAULT_ROPE)),
    # Laguna: query heads per layer (4, 2, 4), softplus-gated attention output per head, a rotary set per layer type on
    # half of each head, a sliding layer (window wider than the streams), a dense first layer then experts; Mellum:
    # Qwen3-MoE's attention in Laguna's layer (no gate)
    **{name: (cls, dict(num_hidden_layers=3, num_key_value_heads=2, head_dim=16, sliding_window=128, num_experts=4,
                        num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                        layer_types=["full_attention", "sliding_attention", "full_attention"], **extra, **TOKEN_IDS,
                        rope_parameters={"full_attention": {**DEFAULT_ROPE, "partial_rotary_factor": partial},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 10.0,
                                                               "partial_rotary_factor": partial}}))
       for name, cls, partial, extra in (
           ("laguna-gated-heads", "LagunaConfig", 0.5, dict(gating="per-head",
                                                             num_attention_heads_per_layer=[4, 2, 4])),
           ("mellum", "MellumConfig", 1.0, {}))},
    # Flint: learned sink logits on every layer, rotary on the sliding layers (window wider than the streams) only
    "flint-sinks-nope": ("FlintConfig", dict(
        num_hidden_layers=3, num_key_value_heads=2, head_dim=16, sliding_window=128, num_experts=4,
        num_experts_per_tok=2, moe_intermediate_size=32, **TOKEN_IDS,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], rope_parameters=DEFAULT_ROPE)),
    # EXAONE 3 / 3.5: its own config type, Llama's modules
    "exaone-llama": ("ExaoneConfig", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "mistral": ("MistralConfig", dict(num_key_value_heads=2, sliding_window=None, rope_parameters=DEFAULT_ROPE)),
    "qwen2-bias": ("Qwen2Config", dict(num_key_value_heads=2, rope_parameters=DEFAULT_ROPE)),
    "qwen3-qknorm": ("Qwen3Config", dict(num_key_value_heads=2, head_dim=24, rope_parameters=DEFAULT_ROPE)),
    "gemma-mqa": ("GemmaConfig", dict(num_key_value_heads=1, head_dim=24, rope_parameters=DEFAULT_ROPE)),
    # caps low enough to bend a tiny random model's scores and logits; windows wider than the test streams
    "gemma2-softcap": ("Gemma2Config", dict(num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=20,
                                            attn_logit_softcapping=1.5, final_logit_softcapping=4.0,
                                            sliding_window=128, rope_parameters=DEFAULT_ROPE)),
    # two rotary bases, the global one linearly scaled; sliding layers 1 and 3 of 4 (window wider than the streams)
    "gemma3-two-ropes": ("Gemma3TextConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=24, sliding_window=128,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        final_logit_softcapping=4.0, rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
            "full_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}})),
    # Gemma 4: full-attention layers 1, 3, 5 with wider heads, one K/V head, keys as values and proportional RoPE;
    # layers 4 and 5 reuse the K/V of layers 2 and 3; per-layer embeddings; experts beside the MLP; capped logits
    "gemma4-shared-kv": ("Gemma4TextConfig", dict(
        num_hidden_layers=6, num_key_value_heads=2, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
        attention_k_eq_v=True, num_kv_shared_layers=2, sliding_window=128, hidden_size_per_layer_input=8,
        vocab_size_per_layer_input=512, enable_moe_block=True, num_experts=4, top_k_experts=2,
        moe_intermediate_size=32, final_logit_softcapping=4.0, **TOKEN_IDS,
        layer_types=["sliding_attention", "full_attention"] * 3, rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 10000.0}})),
    # Gemma 3n: AltUp over 4 copies of the residual stream, LAuReL, activation sparsity in layer 0, per-layer
    # embeddings, layers 4 and 5 reusing the K/V of layers 2 and 3, capped logits
    "gemma3n-altup": ("Gemma3nTextConfig", dict(
        num_hidden_layers=6, num_key_value_heads=2, head_dim=16, sliding_window=128, num_kv_shared_layers=2,
        hidden_size_per_layer_input=8, vocab_size_per_layer_input=512, laurel_rank=8, altup_num_inputs=4,
        activation_sparsity_pattern=[0.95, 0.0, 0.0, 0.0, 0.0, 0.0], final_logit_softcapping=4.0, **TOKEN_IDS,
        layer_types=["sliding_attention", "full_attention"] * 3)),
    # the dense layout without the options: every layer its own K/V and values, no per-layer embeddings
    "gemma4-plain": ("Gemma4TextConfig", dict(
        num_hidden_layers=3, num_key_value_heads=2, head_dim=16, global_head_dim=24, sliding_window=128,
        hidden_size_per_layer_input=0, **TOKEN_IDS, layer_types=["sliding_attention"] * 2 + ["full_attention"])),
    # Gemma 4 12B ("unified"): Gemma 4's attention (wider full-attention heads, keys as values, layer 4 reusing layer
    # 2's K/V) in Gemma 2's layer with the per-layer scalar; and its image-text wrapper, whose head soft-caps too
    "gemma4-unified": ("Gemma4UnifiedTextConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
        attention_k_eq_v=True, num_kv_shared_layers=1, sliding_window=128, final_logit_softcapping=4.0, **TOKEN_IDS,
        layer_types=["sliding_attention", "full_attention"] * 2, rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 10000.0}})),
    "gemma4-unified-multimodal": ("Gemma4UnifiedConfig", dict(text_config=dict(
        num_hidden_layers=2, num_key_value_heads=2, head_dim=16, global_head_dim=24, sliding_window=128,
        final_logit_softcapping=4.0, layer_types=["sliding_attention", "full_attention"], **TOKEN_IDS))),
    # Gemma 4's image-text wrapper (a tiny vision tower that text never reaches), whose head soft-caps too
    "gemma4-multimodal": ("Gemma4Config", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=16),
        text_config=dict(num_hidden_layers=3, num_key_value_heads=2, head_dim=16, global_head_dim=24,
                         sliding_window=128, hidden_size_per_layer_input=8, vocab_size_per_layer_input=512,
                         final_logit_softcapping=4.0, layer_types=["sliding_attention"] * 2 + ["full_attention"],
                         **TOKEN_IDS))),
    # the image-text wrapper of Gemma 3 4B and up: the same language model (its sizes go to text_config)
    "gemma3-multimodal": ("Gemma3Config", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14), mm_tokens_per_image=4,
        text_config=dict(num_hidden_layers=3, num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=24,
                         sliding_window=128, final_logit_softcapping=4.0))),
    # image-text wrappers of other language models (tiny vision towers that text never reaches): Ministral 3 as
    # it ships, LLaVA around Llama, Aya Vision around Cohere 2 (whose logit_scale the wrapper's head drops), and
    # SmolVLM, whose language model sits at `text_model`
    "mistral3-ministral3": ("Mistral3Config", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           head_dim=16, image_size=28, patch_size=14), image_token_index=5,
        text_config=dict(model_type="ministral3", num_key_value_heads=2, head_dim=16, **TOKEN_IDS,
                         rope_parameters=MINISTRAL3_ROPE))),
    "llava-llama": ("LlavaConfig", dict(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32),
        image_token_index=5,
        text_config=dict(model_type="llama", num_key_value_heads=2, rope_parameters=DEFAULT_ROPE))),
    "aya-vision-cohere2": ("AyaVisionConfig", dict(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14), image_token_index=5,
        text_config=dict(model_type="cohere2", num_hidden_layers=4, num_key_value_heads=2, sliding_window=128,
                         logit_scale=0.5, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "smolvlm-llama": ("SmolVLMConfig", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14), image_token_id=5,
        text_config=dict(model_type="llama", num_key_value_heads=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "idefics3-llama": ("Idefics3Config", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14), image_token_id=5,
        text_config=dict(model_type="llama", num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    # more wrappers around supported language models: InternVL (Qwen2), LLaVA-NeXT (Llama), LLaVA-OneVision
    # (Qwen2), Command A Vision (Cohere 2)
    "internvl-qwen2": ("InternVLConfig", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=[28, 28], patch_size=[14, 14]), image_token_id=5,
        text_config=dict(model_type="qwen2", num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "llava-next-llama": ("LlavaNextConfig", dict(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32),
        image_token_index=5,
        text_config=dict(model_type="llama", num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "llava-onevision-qwen2": ("LlavaOnevisionConfig", dict(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14), image_token_index=5,
        text_config=dict(model_type="qwen2", num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "cohere2-vision": ("Cohere2VisionConfig", dict(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14), image_token_id=5,
        text_config=dict(model_type="cohere2", num_hidden_layers=4, num_key_value_heads=2, sliding_window=128,
                         logit_scale=0.5, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    # and more of the same kind (each streams through its language model's adapter)
    **{name: (cls, dict(vision_config=dict(TINY_VISION, **vision), text_config=dict(
        model_type=text, num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE), **ids))
       for name, cls, text, vision, ids in (
           ("vipllava-llama", "VipLlavaConfig", "llama", CLIP, {"image_token_index": 5}),
           ("llava-next-video-llama", "LlavaNextVideoConfig", "llama", CLIP, {"image_token_index": 5}),
           ("video-llava-llama", "VideoLlavaConfig", "llama", CLIP, {"image_token_index": 5}),
           ("idefics2-mistral", "Idefics2Config", "mistral", {}, {"image_token_id": 5}),
           ("got-ocr2-qwen2", "GotOcr2Config", "qwen2", {}, {"image_token_index": 5}),
           ("ovis2-qwen2", "Ovis2Config", "qwen2", {"vocab_size": 16}, {"image_token_id": 5, "hidden_size": 64}),
           ("deepseek-vl-llama", "DeepseekVLConfig", "llama", {}, {"image_token_id": 5}),
           ("lighton-ocr-qwen3", "LightOnOcrConfig", "qwen3", {"head_dim": 16}, {"image_token_id": 5}),
           ("qianfan-ocr-qwen3", "QianfanOCRConfig", "qwen3", {}, {"image_token_id": 5}),
           ("videollama3-qwen2", "VideoLlama3Config", "qwen2", {}, {"image_token_id": 5}),
           ("janus-llama", "JanusConfig", "llama", {"projection_dim": 64}, {"vq_config": dict(
               embed_dim=8, num_embeddings=16, latent_channels=8, base_channels=32, channel_multiplier=[1, 1],
               num_res_blocks=1, projection_dim=64, image_token_embed_dim=32)}),
           ("deepseek-vl-hybrid-llama", "DeepseekVLHybridConfig", "llama", {}, {"image_token_id": 5,
            "high_res_vision_config": dict(hidden_size=32, output_channels=16, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=64, mlp_dim=48, num_pos_feats=16,
                                           window_size=2, global_attn_indexes=[0])}),
           ("pp-chart2table-qwen2", "PPChart2TableConfig", "qwen2", {}, {"image_token_index": 5}))},
    # EXAONE 4.5 (around EXAONE 4), Cosmos 3 Omni (around Qwen3-VL's language model)
    "exaone4.5-exaone4": ("Exaone4_5_Config", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
        text_config=dict(model_type="exaone4", num_hidden_layers=4, num_key_value_heads=2, sliding_window=128,
                         **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "cosmos3-omni-qwen3-vl": ("Cosmos3OmniConfig", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
        text_config=dict(num_key_value_heads=2, head_dim=16, **TOKEN_IDS, rope_parameters={
            **DEFAULT_ROPE, "mrope_section": [2, 3, 3], "mrope_interleaved": True}))),
    # GLM-4.1V / 4.6V / GLM-OCR: GLM-4's post-norms with multimodal RoPE on half of each head; GLM-4.5V: GLM-4.5's
    # experts with it; HyperCLOVA X SEED's image-text wrapper
    **{name: (cls, dict(vision_config=dict(QWEN_VISION),
                         text_config=dict(num_key_value_heads=2, **TOKEN_IDS, **text, rope_parameters={
                             **DEFAULT_ROPE, "partial_rotary_factor": 0.5, "mrope_section": [2, 1, 1]})))
       for name, cls, text in (
           ("glm4.1v", "Glm4vConfig", {}),
           ("glm4.6v", "Glm46VConfig", {}),
           ("glmga", "GlmgaConfig", {}),
           ("glm-ocr", "GlmOcrConfig", {}),
           ("glm4.5v-moe", "Glm4vMoeConfig", dict(head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
                                                  n_shared_experts=1, moe_intermediate_size=32,
                                                  first_k_dense_replace=1, n_group=1, topk_group=1)))},
    "hyperclovax-vision": ("HyperCLOVAXVisionV2Config", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
        text_config=dict(model_type="hyperclovax", num_key_value_heads=2, embedding_multiplier=2.0,
                         residual_multiplier=0.5, logits_scaling=0.5, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    # Qwen2.5-Omni's and Qwen3-Omni's thinkers (tiny audio and vision towers that text never reaches) around
    # Qwen2.5-VL's and Qwen3-VL-MoE's language models
    **{name: (cls, dict(vision_config=dict(QWEN_VISION),
                        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=48,
                                          output_dim=64),
                        text_config=dict(num_key_value_heads=2, **TOKEN_IDS, **text, rope_parameters={
                            **DEFAULT_ROPE, "mrope_section": [2, 3, 3]})))
       for name, cls, text in (
           ("qwen2.5-omni-thinker", "Qwen2_5OmniThinkerConfig", {}),
           ("qwen3-omni-moe-thinker", "Qwen3OmniMoeThinkerConfig", dict(
               head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)))},
    # Aria (routed plus shared experts in a Llama layout) and Apertus 1.5 (its tiny image and audio tokenizers never
    # see text)
    "aria-moe": ("AriaConfig", dict(
        vision_config=dict(TINY_VISION), projector_patch_to_query_dict={4: 4}, image_token_index=5,
        text_config=dict(model_type="aria_text", num_key_value_heads=2, moe_num_experts=4, moe_topk=2,
                         moe_num_shared_experts=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "apertus1.5": ("Apertus1p5Config", dict(
        vision_config=dict(base_channels=32, channel_multiplier=[1, 1], num_res_blocks=1, embed_dim=8, codebook_size=16,
                           latent_channels=8, attn_resolutions=[]),
        audio_config=dict(num_filters=8, upsampling_ratios=[2, 2], num_residual_layers=1, num_lstm_layers=1,
                          hidden_size=16, codebook_size=16, codebook_dim=16, decoder_hidden_size=16,
                          decoder_intermediate_size=32, decoder_num_layers=1, decoder_attention_num_groups=4),
        image_token_id=5, audio_token_id=6, image_token_offset=400, audio_token_offset=416,
        text_config=dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    # ERNIE 4.5 VL: interleaved multimodal RoPE in its own frequency order, a dense first layer, then text and vision
    # experts (text routes to the text ones)
    "ernie4.5-vl-moe": ("Ernie4_5_VLMoeConfig", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, embed_dim=32), image_token_id=5,
        text_config=dict(num_key_value_heads=2, moe_num_experts=4, moe_k=2, moe_intermediate_size=[32, 16],
                         moe_num_shared_experts=1, mlp_layer_types=["dense", "sparse"], **TOKEN_IDS,
                         rope_parameters={**DEFAULT_ROPE, "mrope_section": [2, 2, 4]}))),
    # Granite-Docling (Granite's muP scalars, its head too), PaddleOCR-VL (ERNIE 4.5 with multimodal RoPE)
    "granite-docling": ("GraniteDoclingConfig", dict(
        vision_config=dict(TINY_VISION, out_hidden_size=64), image_token_id=5,
        text_config=dict(num_key_value_heads=2, embedding_multiplier=2.0, residual_multiplier=0.5,
                         logits_scaling=2.0, attention_multiplier=0.2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE))),
    "paddleocr-vl": ("PaddleOCRVLConfig", dict(
        vision_config=dict(TINY_VISION), image_token_id=5,
        text_config=dict(num_key_value_heads=2, head_dim=16, use_bias=True, **TOKEN_IDS,
                         rope_parameters={**DEFAULT_ROPE, "mrope_section": [2, 3, 3]}))),
    # DeepSeek-OCR 2: Llama attention in DeepSeek-V2's layer (a dense first layer, then experts); tiny SAM and encoder
    "deepseek-ocr2": ("DeepseekOcr2Config", dict(
        vision_config=dict(
            sam_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=1, num_attention_heads=2,
                            image_size=64, patch_size=16, window_size=2, global_attn_indexes=[0], mlp_dim=48,
                            downsample_channels=[16, 32]),
            encoder_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, layer_types=["full_attention"])),
        image_token_id=5, text_config=dict(
            num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            moe_intermediate_size=32, mlp_layer_types=["dense", "sparse"], **TOKEN_IDS,
            rope_parameters=DEFAULT_ROPE))),
    # Molmo 2: the scaled rotary table (linear) on layers 1 and 3, the unscaled one elsewhere; q/k norms over all heads
    # and post-norms in one case, per head and pre-norms in the other
    **{name: ("Molmo2Config", dict(
        vision_config=dict(TINY_VISION, num_key_value_heads=2, head_dim=16, image_size=[28, 28],
                           num_position_embeddings=4),
        adapter_config=dict(vision_feature_layer=[0], hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                            head_dim=16, intermediate_size=48, text_hidden_size=64),
        image_token_id=5, text_config=dict(
            num_hidden_layers=4, num_key_value_heads=2, head_dim=16, additional_vocab_size=0,
            rope_scaling_layers=[1, 3], **text, **TOKEN_IDS,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})))
       for name, text in (("molmo2-olmo-post-norm", dict(qk_norm_type="olmo", norm_after=True)),
                          ("molmo2-qwen3-pre-norm", dict(qk_norm_type="qwen3", norm_after=False)))},
    # Kimi K2.5: DeepSeek-V3's latent attention inside an image-text wrapper
    "kimi-k2.5-deepseek-v3": ("Kimi_K25Config", dict(projection_hidden_size=32, vision_config=dict(
        num_hidden_layers=1, hidden_size=32, intermediate_size=48, num_attention_heads=2, pos_emb_height=4,
        pos_emb_width=4), text_config=dict(
        model_type="deepseek_v3", num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12,
        qk_rope_head_dim=8, v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
        moe_intermediate_size=32, first_k_dense_replace=1, n_group=1, topk_group=1, **TOKEN_IDS))),
    # Llama 3.2 Vision: cross-attention layers 1 and 3 between self-attention layers (skipped for text), Llama 3 RoPE
    "mllama-cross-layers": ("MllamaConfig", dict(
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_global_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14, vision_output_dim=64,
                           intermediate_layers_indices=[0]),
        text_config=dict(num_hidden_layers=4, cross_attention_layers=[1, 3], num_key_value_heads=2, **TOKEN_IDS,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64}))),
    # Qwen-VL: multimodal RoPE (a frequency slice per axis; text sits at one position on all three)
    "qwen2-vl": ("Qwen2VLConfig", dict(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2),
        text_config=dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters={**DEFAULT_ROPE,
                                                                               "mrope_section": [2, 3, 3]}))),
    "qwen2.5-vl": ("Qwen2_5_VLConfig", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
        text_config=dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters={**DEFAULT_ROPE,
                                                                               "mrope_section": [2, 3, 3]}))),
    "qwen3-vl-interleaved": ("Qwen3VLConfig", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
        text_config=dict(num_key_value_heads=2, head_dim=16, **TOKEN_IDS, rope_parameters={
            **DEFAULT_ROPE, "mrope_section": [2, 3, 3], "mrope_interleaved": True}))),
    "qwen3-vl-moe": ("Qwen3VLMoeConfig", dict(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
        text_config=dict(num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
                         moe_intermediate_size=32, **TOKEN_IDS, rope_parameters={
                             **DEFAULT_ROPE, "mrope_section": [2, 3, 3], "mrope_interleaved": True}))),
    # a sliding window wider than the test streams (110 tokens): it must change nothing
    "phi3-partial-rotary": ("Phi3Config", dict(num_key_value_heads=2, sliding_window=128, pad_token_id=0,
                                               eos_token_id=2, rope_parameters={**DEFAULT_ROPE,
                                                                                "partial_rotary_factor": 0.5})),
    # Phi-4-multimodal: Phi-3's language model beside tiny image and audio encoders that text never reaches
    "phi4-multimodal": ("Phi4MultimodalConfig", dict(
        num_key_value_heads=2, **TOKEN_IDS, rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5},
        vision_config=dict(TINY_VISION, image_token_id=5),
        audio_config=dict(hidden_size=32, intermediate_size=48, num_blocks=1, num_attention_heads=2,
                          ext_pw_out_channel=32, depthwise_separable_out_channel=32, nemo_conv_channels=32,
                          audio_token_id=6))),
    # LongRoPE with an original context (128) above every position the tests stream at
    "phi3-longrope": ("Phi3Config", dict(num_key_value_heads=2, original_max_position_embeddings=128, **TOKEN_IDS,
                                         rope_parameters=LONGROPE)),
    # Falcon's three fused-q/k/v layouts: 7B (multi-query, parallel branches from one LayerNorm), 40B/180B (K/V
    # groups broadcast to their query heads, a LayerNorm per branch), RW (multi-head, sequential, biases)
    "falcon-7b-mqa": ("FalconConfig", dict(multi_query=True, parallel_attn=True, new_decoder_architecture=False,
                                           **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "falcon-40b-groups": ("FalconConfig", dict(new_decoder_architecture=True, num_kv_heads=2, **TOKEN_IDS,
                                               rope_parameters=DEFAULT_ROPE)),
    "falcon-rw-sequential": ("FalconConfig", dict(multi_query=False, parallel_attn=False, bias=True, **TOKEN_IDS,
                                                  rope_parameters=DEFAULT_ROPE)),
    # ALiBi instead of rotary (slopes from a head count that is not a power of two), clipped q/k/v
    "mpt-alibi": ("MptConfig", dict(num_attention_heads=6, hidden_size=96, max_seq_len=1024,
                                    attn_config={"clip_qkv": 2.0}, **TOKEN_IDS)),
    # ALiBi again, BLOOM's way (its own slopes for 6 heads), an embedding LayerNorm, residuals from the LayerNorm
    "bloom-alibi": ("BloomConfig", dict(num_attention_heads=6, hidden_size=96, **TOKEN_IDS)),
    "bloom-post-ln-residual": ("BloomConfig", dict(apply_residual_connection_post_layernorm=True, **TOKEN_IDS)),
    "olmo2-postnorm": ("Olmo2Config", dict(num_key_value_heads=2, pad_token_id=0, eos_token_id=2,
                                           rope_parameters=DEFAULT_ROPE)),
    # mixtures of experts: 4 experts, 2 per token (Qwen2-MoE: a shared expert, and a dense MLP in layer 0)
    "mixtral-moe": ("MixtralConfig", dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                          rope_parameters=DEFAULT_ROPE)),
    "qwen2-moe-shared": ("Qwen2MoeConfig", dict(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                                moe_intermediate_size=32, shared_expert_intermediate_size=48,
                                                mlp_only_layers=[0], rope_parameters=DEFAULT_ROPE)),
    "qwen3-moe": ("Qwen3MoeConfig", dict(num_key_value_heads=2, head_dim=24, num_experts=4, num_experts_per_tok=2,
                                         moe_intermediate_size=32, norm_topk_prob=True, rope_parameters=DEFAULT_ROPE)),
    "olmoe-clipped": ("OlmoeConfig", dict(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, clip_qkv=0.3,
                                          pad_token_id=0, eos_token_id=2, rope_parameters=DEFAULT_ROPE)),
    # learned per-head sink logits (scaled up to matter), MoE returning router scores, YaRN, sliding layers 0, 2
    "gpt-oss-sinks": ("GptOssConfig", dict(num_key_value_heads=2, head_dim=16, num_local_experts=4,
                                           num_experts_per_tok=2, sliding_window=128, pad_token_id=0, eos_token_id=2,
                                           rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                            "original_max_position_embeddings": 64})),
    # parallel residual, biases, q/k LayerNorm per head, partial rotary applied outside the model's rotation function
    "phi-parallel": ("PhiConfig", dict(num_key_value_heads=4, qk_layernorm=True, pad_token_id=0, eos_token_id=2,
                                       rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    # layers 1 and 3 use no rotary embedding (NoPE)
    "smollm3-nope": ("SmolLM3Config", dict(num_hidden_layers=4, num_key_value_heads=2, no_rope_layers=[1, 0, 1, 0],
                                           pad_token_id=0, eos_token_id=2, rope_parameters=DEFAULT_ROPE)),
    "stablelm-parallel": ("StableLmConfig", dict(num_key_value_heads=2, qk_layernorm=True, use_qkv_bias=True,
                                                 use_parallel_residual=True, pad_token_id=0, eos_token_id=2,
                                                 rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.25})),
    "stablelm-sequential": ("StableLmConfig", dict(num_key_value_heads=4, pad_token_id=0, eos_token_id=2,
                                                   rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    "starcoder2": ("Starcoder2Config", dict(num_key_value_heads=2, sliding_window=128, pad_token_id=0,
                                            eos_token_id=2, rope_parameters=DEFAULT_ROPE)),
    # parallel residual from one LayerNorm, LayerNorm per head on q and k, interleaved rotary, scaled logits
    "cohere-parallel-qknorm": ("CohereConfig", dict(num_key_value_heads=2, use_qk_norm=True, logit_scale=0.5,
                                                    **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # sliding layers 0-2 with rotary, layer 3 full attention without any position encoding (NoPE)
    "cohere2-nope": ("Cohere2Config", dict(num_hidden_layers=4, num_key_value_heads=2, sliding_window=128,
                                           logit_scale=0.5, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # interleaved partial rotary, biases, fused gate/up
    "glm-interleaved": ("GlmConfig", dict(num_key_value_heads=2, **TOKEN_IDS,
                                          rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    "glm4-postnorms": ("Glm4Config", dict(num_key_value_heads=2, **TOKEN_IDS,
                                          rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    # a rotary set per layer type (YaRN on the full-attention layer only), sliding layers 0-2
    "olmo3-two-ropes": ("Olmo3Config", dict(
        num_hidden_layers=4, num_key_value_heads=2, sliding_window=128, **TOKEN_IDS, rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
            "full_attention": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                               "original_max_position_embeddings": 256}})),
    # post-norms, per-head q/k norms, NoPE on the full-attention layer 3
    "exaone4-nope": ("Exaone4Config", dict(num_hidden_layers=4, num_key_value_heads=2, sliding_window=128,
                                           **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # K-EXAONE: EXAONE 4's attention in the pre-norm layout, NoPE on the full-attention layer 3, a dense layer 0
    "exaone-moe-nope": ("ExaoneMoeConfig", dict(num_hidden_layers=4, num_key_value_heads=2, sliding_window=128,
                                                num_experts=4, num_experts_per_tok=2, num_shared_experts=1,
                                                moe_intermediate_size=32, first_k_dense_replace=1, **TOKEN_IDS,
                                                rope_parameters=DEFAULT_ROPE)),
    "apertus-qknorm": ("ApertusConfig", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
    "arcee-relu2": ("ArceeConfig", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "seed-oss-bias": ("SeedOssConfig", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "ernie4.5-interleaved": ("Ernie4_5Config", dict(num_key_value_heads=2, **TOKEN_IDS,
                                                    rope_parameters=DEFAULT_ROPE)),
    "nemotron-partial": ("NemotronConfig", dict(num_key_value_heads=2, **TOKEN_IDS,
                                                rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    # sliding windows marked per layer (layers 0 and 2)
    "ministral-layer-windows": ("MinistralConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, head_dim=16, sliding_window=128, **TOKEN_IDS,
        layer_types=["sliding_attention", "full_attention"] * 2, rope_parameters=DEFAULT_ROPE)),
    # YaRN with Llama 4's query scaling from position 256 on (the streams stay below it)
    "ministral3-scaled-queries": ("Ministral3Config", dict(num_key_value_heads=2, head_dim=16, **TOKEN_IDS,
                                                          rope_parameters=MINISTRAL3_ROPE)),
    "granitemoe-multipliers": ("GraniteMoeConfig", dict(num_key_value_heads=2, num_local_experts=4,
                                                        num_experts_per_tok=2, embedding_multiplier=3.0,
                                                        residual_multiplier=0.5, logits_scaling=4.0,
                                                        attention_multiplier=0.2, rope_parameters=DEFAULT_ROPE)),
    "granitemoe-shared": ("GraniteMoeSharedConfig", dict(num_key_value_heads=2, num_local_experts=4,
                                                         num_experts_per_tok=2, shared_intermediate_size=48,
                                                         embedding_multiplier=3.0, residual_multiplier=0.5,
                                                         logits_scaling=4.0, attention_multiplier=0.2,
                                                         rope_parameters=DEFAULT_ROPE)),
    # Llama's layout under other model types: IQuest-Coder; CWM with Llama 3 rotary and sliding layers 1-3 (windows
    # wider than the streams); Jais 2 with LayerNorms and a gateless MLP
    "iquestcoder": ("IQuestCoderConfig", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "cwm-sliding": ("CwmConfig", dict(num_hidden_layers=4, num_key_value_heads=2, head_dim=16, sliding_window=128,
                                      **TOKEN_IDS, rope_parameters={
                                          "rope_type": "llama3", "rope_theta": 1e6, "factor": 16.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64})),
    "jais2-layernorm": ("Jais2Config", dict(num_key_value_heads=2, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "sarvam-moe-qknorm": ("SarvamMoEConfig", dict(num_key_value_heads=2, head_dim=16, n_routed_experts=4,
                                                  num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
                                                  n_group=1, topk_group=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # GPT-J: parallel residual from one LayerNorm, interleaved rotary on the first 8 of 16 dims from a sin/cos table
    "gptj-partial": ("GPTJConfig", dict(rotary_dim=8, **TOKEN_IDS)),
    # OLMo 1: weightless LayerNorms, clamped q/k/v
    "olmo-clipped": ("OlmoConfig", dict(num_key_value_heads=2, clip_qkv=0.3, **TOKEN_IDS,
                                        rope_parameters=DEFAULT_ROPE)),
    "helium-bias": ("HeliumConfig", dict(num_key_value_heads=2, head_dim=16, attention_bias=True, **TOKEN_IDS,
                                         rope_parameters=DEFAULT_ROPE)),
    # GLM-4.5: half-rotary heads, biases, q/k norms per head, a dense layer 0 then routed + shared experts
    "glm4-moe-qknorm": ("Glm4MoeConfig", dict(num_key_value_heads=2, head_dim=16, use_qk_norm=True,
                                              attention_bias=True, n_routed_experts=4, num_experts_per_tok=2,
                                              n_shared_experts=1, moe_intermediate_size=32, first_k_dense_replace=1,
                                              n_group=1, topk_group=1, **TOKEN_IDS,
                                              rope_parameters={**DEFAULT_ROPE, "partial_rotary_factor": 0.5})),
    "solar-open-moe": ("SolarOpenConfig", dict(num_key_value_heads=2, head_dim=16, n_routed_experts=4,
                                               num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
                                               n_group=1, topk_group=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "ernie4.5-moe-shared": ("Ernie4_5_MoeConfig", dict(
        num_key_value_heads=2, use_bias=True, moe_num_experts=4, moe_k=2, moe_num_shared_experts=1,
        moe_intermediate_size=32, moe_layer_start_index=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # Phi-3.5-MoE's LongRoPE: short factors throughout, cos/sin scaled by short_mscale (not attention_scaling) below
    # the original context (128, above the test streams); a window wider than the streams on every layer
    "phimoe-longrope": ("PhimoeConfig", dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                             sliding_window=128, **TOKEN_IDS, rope_parameters={
                                                 "rope_type": "longrope", "rope_theta": 10000.0,
                                                 "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.0, 3.5],
                                                 "long_factor": [1.5, 2.0, 3.0, 4.5, 6.0, 8.0, 9.0, 10.0],
                                                 "short_mscale": 1.3, "long_mscale": 1.6,
                                                 "original_max_position_embeddings": 128})),
    # MiniMax-M2: q/k RMSNorm over all heads, rotary on 8 of 16 dims (its config's legacy `rotary_dim`)
    "minimax-m2-partial": ("MiniMaxM2Config", dict(num_key_value_heads=2, head_dim=16, rotary_dim=8,
                                                   num_local_experts=4, num_experts_per_tok=2, **TOKEN_IDS,
                                                   rope_parameters=DEFAULT_ROPE)),
    # dots.llm1: per-head q/k norms, a dense layer 0, routed + shared experts, a sliding window from layer 1 on
    "dots1-sliding": ("Dots1Config", dict(num_hidden_layers=3, num_key_value_heads=2, head_dim=16, n_routed_experts=4,
                                          num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
                                          first_k_dense_replace=1, n_group=1, topk_group=1, sliding_window=128,
                                          max_window_layers=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # Gemma 2's attention and logit caps with pre-norms only; sliding layers 0 and 2 (windows wider than the streams)
    "vaultgemma-softcap": ("VaultGemmaConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=20, attn_logit_softcapping=1.5,
        final_logit_softcapping=4.0, sliding_window=128, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "flex-olmo-moe": ("FlexOlmoConfig", dict(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, **TOKEN_IDS,
                                             rope_parameters=DEFAULT_ROPE)),
    # Cohere 2's parallel layer with NoPE on the full-attention layer 3, a dense layer 0, routed + shared experts
    "cohere2-moe-nope": ("Cohere2MoeConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, sliding_window=128, logit_scale=0.5, num_experts=4,
        num_experts_per_tok=2, num_shared_experts=1, first_k_dense_replace=1, prefix_dense_intermediate_size=96,
        **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # multi-head latent attention: low-rank queries, a shared rotated key part on interleaved pairs, values narrower
    # than q/k heads, YaRN (cos/sin scaled by mscale / mscale_all_dim, the softmax scale by mscale_all_dim^2); a dense
    # layer 0 then routed + shared experts
    "deepseek-v3-mla": ("DeepseekV3Config", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        first_k_dense_replace=1, n_group=1, topk_group=1, **TOKEN_IDS, rope_parameters={
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256,
            "mscale": 1.0, "mscale_all_dim": 0.5})),
    # full-rank queries, rotate-half rotary, values wider than q/k heads
    "deepseek-v3-full-rank": ("DeepseekV3Config", dict(
        num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=24, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        first_k_dense_replace=1, n_group=1, topk_group=1, rope_interleave=False, **TOKEN_IDS,
        rope_parameters=DEFAULT_ROPE)),
    # GLM-4.7-Flash (`glm4_moe_lite`): DeepSeek-V3's latent attention and routing in GLM's own file, a dense layer 0
    "glm4-moe-lite-mla": ("Glm4MoeLiteConfig", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # Youtu-LLM: the latent attention with dense MLPs only, tied head, rotate-half rotary
    "youtu-mla-dense": ("YoutuConfig", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, rope_interleave=False, initializer_range=0.08, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # DeepSeek-V2: the same latent attention with complex-number rotary on adjacent pairs, YaRN with mscale
    # Sarvam's latent-attention config around DeepSeek-V3's modules; Mistral Small 4: latent attention with
    # rotate-half rotary and Ministral 3's query scaling (1 below the original context, 256 here)
    "sarvam-mla": ("SarvamMLAConfig", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        first_k_dense_replace=1, n_group=1, topk_group=1, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "mistral4-mla": ("Mistral4Config", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        first_k_dense_replace=1, rope_interleave=False, **TOKEN_IDS, rope_parameters=MINISTRAL3_ROPE)),
    # DeepSeek sparse attention: an indexer that keeps each query's index_topk best keys (here more than the tests'
    # positions, so all of them: exact), its keys cached beside the latent; GLM-5's reuses the top-k on "shared" layers
    "deepseek-v3.2-dsa": ("DeepseekV32Config", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        first_k_dense_replace=1, n_group=1, topk_group=1, index_topk=128, index_n_heads=2, index_head_dim=16,
        **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "glm5-dsa-shared": ("GlmMoeDsaConfig", dict(
        num_hidden_layers=3, num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12,
        qk_rope_head_dim=8, v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
        moe_intermediate_size=32, first_k_dense_replace=1, index_topk=128, index_n_heads=2, index_head_dim=16,
        indexer_types=["full", "shared", "full"], **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # MiniCPM3: latent attention (full-rank queries) in a dense muP-scaled Llama layer
    "minicpm3-mla": ("MiniCPM3Config", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, scale_emb=2.0, scale_depth=1.4, dim_model_base=32, **TOKEN_IDS,
        rope_parameters=DEFAULT_ROPE)),
    # LongCat-Flash: two latent-attention sublayers per layer (caches 2i, 2i + 1), scaled query and latent, a dense
    # MLP after each and experts (with zero-computation ones) fed by the first and added after the second
    "longcat-flash-shortcut": ("LongcatFlashConfig", dict(
        num_layers=2, num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12,
        qk_rope_head_dim=8, head_dim=8, v_head_dim=10, ffn_hidden_size=48, n_routed_experts=4, zero_expert_num=2,
        moe_topk=2, expert_ffn_hidden_size=32, **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    "deepseek-v2-mla": ("DeepseekV2Config", dict(
        num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
        v_head_dim=10, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
        first_k_dense_replace=1, **TOKEN_IDS, rope_parameters={
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256,
            "mscale": 1.0, "mscale_all_dim": 0.5})),
    # Arcee Trinity: gated attention output, norms around both branches, muP embedding scale, rotary on the sliding
    # layers 0-2 only (windows wider than the streams), a dense layer 0
    "afmoe-gated": ("AfmoeConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
        num_shared_experts=1, moe_intermediate_size=32, num_dense_layers=1, sliding_window=128, mup_enabled=True,
        **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # nanochat: q/k RMS-normed after the rotary embedding, a norm after the embedding, soft-capped logits
    "nanochat-softcap": ("NanoChatConfig", dict(num_key_value_heads=2, final_logit_softcapping=4.0, **TOKEN_IDS,
                                                rope_parameters=DEFAULT_ROPE)),
    # InternLM3: Llama's layer with a head dim that is not hidden / heads, biases on every projection
    "internlm3-bias": ("InternLM3Config", dict(num_key_value_heads=2, head_dim=24, attention_bias=True, mlp_bias=True,
                                               **TOKEN_IDS, rope_parameters=DEFAULT_ROPE)),
    # Llama 4: complex rotary with L2-normed q/k on layers 0-2 (chunks wider than the streams), NoPE with query
    # temperature tuning on layer 3 (exactly 1 below position 255, above the streams), MoE in layers 1 and 3
    "llama4-nope-chunked": ("Llama4TextConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, head_dim=16, intermediate_size_mlp=96, num_local_experts=4,
        num_experts_per_tok=1, interleave_moe_layer_step=2, attention_chunk_size=128, floor_scale=256,
        use_qk_norm=True, **TOKEN_IDS, rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
    # granite-swash: Granite's multipliers, a learned sink logit per head, a rotary base per layer (0: NoPE),
    # sliding layers 1-3 (windows wider than the streams); its MoE variant with a shared MLP
    "granite-swa-sinks": ("GraniteSWAConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, sliding_window=128, layer_rope_theta=[10000.0, 0, 500.0, 10000.0],
        embedding_multiplier=3.0, residual_multiplier=0.5, logits_scaling=4.0, attention_multiplier=0.2, **TOKEN_IDS,
        rope_parameters=DEFAULT_ROPE)),
    "granitemoe-swa-sinks": ("GraniteMoeSWAConfig", dict(
        num_hidden_layers=4, num_key_value_heads=2, sliding_window=128, layer_rope_theta=[0, 10000.0, 10000.0, 500.0],
        num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=48, embedding_multiplier=3.0,
        residual_multiplier=0.5, logits_scaling=4.0, attention_multiplier=0.2, **TOKEN_IDS,
        rope_parameters=DEFAULT_ROPE)),
    "granite-multipliers": ("GraniteConfig", dict(num_key_value_heads=2, embedding_multiplier=3.0,
                                                  residual_multiplier=0.5, logits_scaling=4.0,
                                                  attention_multiplier=0.2, rope_parameters=DEFAULT_ROPE)),
}


def family_config(case: str, **overrides):
    import transformers

    cls_name, extra = FAMILY_CASES[case]
    extra = copy.deepcopy(extra)  # configs may write into the dicts they get (MiniMax-M2: its rotary_dim)
    if "text_config" in extra:  # a multimodal wrapper: the sizes and overrides are its language model's
        return getattr(transformers, cls_name)(**{**extra, "text_config": {**SMALL, **extra["text_config"],
                                                                           **overrides}})
    return getattr(transformers, cls_name)(**{**SMALL, **extra, **overrides})


def family_model(case: str, seed: int = 0, **overrides):
    from sinktrain.model.source import auto_model_class

    config = family_config(case, **overrides)
    torch.manual_seed(seed)
    # as sinktrain's load_pretrained does: SDPA cannot soft-cap (transformers 5.17 picked it for Gemma 2 anyway)
    eager = {"attn_implementation": "eager"} if getattr(config, "attn_logit_softcapping", None) else {}
    model = auto_model_class(config).from_config(config, **eager).eval()
    with torch.no_grad():  # norms start at exactly 1 and biases at 0: make them matter
        for name, p in model.named_parameters():
            if name.endswith(".sinks"):  # gpt-oss's per-head sink logits: large enough to take real attention
                p.normal_(0.0, 2.0)
            if "norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.2)
        for name, b in model.named_buffers():
            if name.endswith(".layer_scalar"):  # Gemma 4's per-layer output scale (a buffer, 1 at init)
                b.uniform_(0.5, 1.5)
    return model


def small_tokenizer():
    """A byte-level BPE of VOCAB - 32 ids trained on Emma (a few seconds), as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 32, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([(BOOKS / "austen_emma.txt").read_text()[:200_000]], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def save_family_folder(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@torch.no_grad()
def llama_streaming_nll_f64(model, tokens, sinks: int, window: int) -> np.ndarray:
    """Per-token NLL of tokens[1:] under an s+w StreamingLLM cache, token by token in float64, written from
    the Llama definition (RMSNorm, RoPE with rotate-half at cache indices, grouped-query attention, SwiGLU)
    and only the model's weights. Default RoPE only."""
    cfg = model.config
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    inv_freq = 1.0 / cfg.rope_parameters["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float64) / D)

    def w(module):
        return module.weight.double()

    def rms(x, module):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_norm_eps) * w(module)

    def rope(x, pos):  # x [heads, D] at integer position pos
        ang = pos * inv_freq
        cos, sin = torch.cat([ang.cos(), ang.cos()]), torch.cat([ang.sin(), ang.sin()])
        return x * cos + torch.cat([-x[:, D // 2:], x[:, : D // 2]], dim=-1) * sin

    layers = model.model.layers
    cache = [[] for _ in layers]  # per layer: (raw key [KV, D], value [KV, D]) of the kept tokens, in order
    out = []
    for t in range(len(tokens) - 1):
        x = model.model.embed_tokens.weight.double()[int(tokens[t])]
        for li, layer in enumerate(layers):
            a = layer.self_attn
            h = rms(x, layer.input_layernorm)
            q = (w(a.q_proj) @ h).view(H, D)
            k = (w(a.k_proj) @ h).view(KV, D)
            v = (w(a.v_proj) @ h).view(KV, D)
            entries = cache[li] + [(k, v)]
            n = len(entries) - 1  # the query sits at cache index n, cached key i at index i
            keys = torch.stack([rope(ki, i) for i, (ki, _) in enumerate(entries)])  # [n+1, KV, D]
            vals = torch.stack([vi for _, vi in entries])
            qr = rope(q, n)
            heads = []
            for hd in range(H):
                g = hd // (H // KV)
                p = torch.softmax(keys[:, g] @ qr[hd] / math.sqrt(D), dim=0)
                heads.append(p @ vals[:, g])
            x = x + w(a.o_proj) @ torch.cat(heads)
            m = layer.mlp
            h2 = rms(x, layer.post_attention_layernorm)
            x = x + w(m.down_proj) @ (torch.nn.functional.silu(w(m.gate_proj) @ h2) * (w(m.up_proj) @ h2))
            cache[li] = entries
        logits = model.get_output_embeddings().weight.double() @ rms(x, model.model.norm)
        out.append(float(torch.logsumexp(logits, 0) - logits[int(tokens[t + 1])]))
        for li in range(len(layers)):
            if len(cache[li]) > sinks + window:
                del cache[li][sinks]  # evict the oldest non-sink entry
    return np.asarray(out)
