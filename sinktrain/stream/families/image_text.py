"""Image-text models that wrap a supported language model: Gemma 3 4B and up (`gemma3`), Mistral Small 3.1 / 3.2 and
every Ministral 3 (`mistral3`), Pixtral 12B and LLaVA 1.5 (`llava`), Aya Vision (`aya_vision`), Idefics 3 and
SmolVLM (`idefics3`, `smolvlm`), Qwen2-VL, Qwen2.5-VL and Qwen3-VL (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`,
`qwen3_vl_moe`), InternVL 2.5 / 3 (`internvl`), LLaVA-NeXT (`llava_next`), LLaVA-OneVision (`llava_onevision`),
Command A Vision (`cohere2_vision`), Gemma 4 (`gemma4`), ViP-LLaVA (`vipllava`), LLaVA-NeXT-Video
(`llava_next_video`), Video-LLaVA (`video_llava`), Idefics 2 (`idefics2`), GOT-OCR 2 (`got_ocr2`), Ovis 2 (`ovis2`),
DeepSeek-VL (`deepseek_vl`), Kimi K2.5 (`kimi_k25`, around DeepSeek-V3), Llama 3.2 Vision (`mllama`), LightOnOCR
(`lighton_ocr`), Qianfan-OCR (`qianfan_ocr`), VideoLLaMA 3 (`video_llama_3`), Janus (`janus`), DeepSeek-VL hybrid
(`deepseek_vl_hybrid`), EXAONE 4.5 (`exaone4_5`), Cosmos 3 Omni (`cosmos3_omni`), PP-Chart2Table (`pp_chart2table`),
HyperCLOVA X SEED Vision (`hyperclovax_vision_v2`), GLM-4.1V / 4.6V / 4.5V and GLM-OCR (`glm4v`, `glm46v`, `glmga`,
`glm4v_moe`, `glm_ocr`), the Qwen2.5-Omni and Qwen3-Omni thinkers (`qwen2_5_omni_thinker`,
`qwen3_omni_moe_thinker`), Fuyu (`fuyu`), Aria (`aria`), Apertus 1.5 (`apertus1p5`), ERNIE 4.5 VL
(`ernie4_5_vl_moe`), Gemma 4 12B (`gemma4_unified`), Granite-Docling (`granite_docling`), PaddleOCR-VL
(`paddleocr_vl`), DeepSeek-OCR 2 (`deepseek_ocr2`) and Molmo 2 (`molmo2`).

Given text alone, each of them embeds the ids with its language model's embedding, runs that language model and
applies its own output head; the vision tower is never touched. So a wrapper streams through its language
model's family adapter with three things changed:
- the config: the wrapper's `text_config`;
- where the language model sits: `model.model.language_model` (`text_model` in Idefics 2 / 3, SmolVLM and
  Granite-Docling);
- the head: the wrapper's plain `lm_head` on the final norm. It applies none of the text family's own logit
  scaling or soft-capping (Aya Vision's Cohere 2 drops its logit_scale, Gemma 3 its final soft-cap), because
  the wrapper's forward does not; Gemma 4's wrappers soft-cap and HyperCLOVA X SEED Vision's and
  Granite-Docling's scale as their language models do (`HEAD_AS_LANGUAGE_MODEL`).
The runtime self-check compares the result with the wrapper's own forward, so a wrapper that starts doing more
is caught before streaming.
"""

from __future__ import annotations

import functools

from sinktrain.stream.families.base import FamilyAdapter

# wrapper model_type -> the attribute of `model.model` that holds the language model
LANGUAGE_MODEL_ATTRIBUTE = {
    "gemma3": "language_model",
    "mistral3": "language_model",
    "llava": "language_model",
    "aya_vision": "language_model",
    "idefics3": "text_model",
    "smolvlm": "text_model",
    "qwen2_vl": "language_model",
    "qwen2_5_vl": "language_model",
    "qwen3_vl": "language_model",
    "qwen3_vl_moe": "language_model",
    "internvl": "language_model",
    "llava_next": "language_model",
    "llava_onevision": "language_model",
    "cohere2_vision": "language_model",
    "gemma4": "language_model",
    "vipllava": "language_model",
    "llava_next_video": "language_model",
    "video_llava": "language_model",
    "idefics2": "text_model",
    "got_ocr2": "language_model",
    "ovis2": "language_model",
    "deepseek_vl": "language_model",
    "kimi_k25": "language_model",
    "mllama": "language_model",
    "lighton_ocr": "language_model",
    "qianfan_ocr": "language_model",
    "video_llama_3": "language_model",
    "janus": "language_model",
    "deepseek_vl_hybrid": "language_model",
    "exaone4_5": "language_model",
    "cosmos3_omni": "language_model",
    "pp_chart2table": "language_model",
    "hyperclovax_vision_v2": "language_model",
    "glm4v": "language_model",
    "glm46v": "language_model",
    "glmga": "language_model",
    "glm4v_moe": "language_model",
    "glm_ocr": "language_model",
    "qwen2_5_omni_thinker": "language_model",
    "qwen3_omni_moe_thinker": "language_model",
    "fuyu": "language_model",
    "aria": "language_model",
    "apertus1p5": "language_model",
    "ernie4_5_vl_moe": "language_model",
    "gemma4_unified": "language_model",
    "granite_docling": "text_model",
    "paddleocr_vl": "language_model",
    "deepseek_ocr2": "language_model",
    "molmo2": "language_model",
}
# Wrappers that transformers 5.17 laid out with the language model itself at `model.model` (the Omni thinkers).
LANGUAGE_MODEL_AT_MODEL_517 = {"qwen2_5_omni_thinker", "qwen3_omni_moe_thinker"}
# Wrappers whose forward applies their language family's own logit processing (Gemma 4 soft-caps in the wrapper too,
# HyperCLOVA X SEED multiplies by logits_scaling, Granite-Docling divides by it).
HEAD_AS_LANGUAGE_MODEL = {"gemma4", "gemma4_unified", "hyperclovax_vision_v2", "granite_docling"}


class ImageTextWrapper:
    """Mixed in before a language family's adapter (see `wrapped`)."""

    language_model_attribute = "language_model"

    @classmethod
    def language_config(cls, config):
        return config.text_config

    @property
    def backbone(self):
        inner = self.model.model
        if self.model_types[0] in LANGUAGE_MODEL_AT_MODEL_517 and self.language_model_attribute not in inner._modules:
            return inner
        return getattr(inner, self.language_model_attribute)

    def logits(self, x):
        return FamilyAdapter.logits(self, x)  # the wrapper's own head, see the module doc


@functools.cache
def wrapped(text_adapter: type[FamilyAdapter], wrapper_type: str) -> type[FamilyAdapter]:
    """The adapter of a `wrapper_type` model whose language model is a `text_adapter` family (family name
    'wrapper/text', e.g. 'mistral3/ministral3')."""
    name = "".join(part.capitalize() for part in wrapper_type.split("_")) + text_adapter.__name__
    head = {"logits": text_adapter.logits} if wrapper_type in HEAD_AS_LANGUAGE_MODEL else {}
    return type(name, (ImageTextWrapper, text_adapter), {
        "family": f"{wrapper_type}/{text_adapter.family}",
        "model_types": (wrapper_type,),
        "language_model_attribute": LANGUAGE_MODEL_ATTRIBUTE[wrapper_type],
        "__doc__": f"The {text_adapter.family} language model inside a {wrapper_type} image-text model.",
        **head,
    })
