"""Seed-OSS (ByteDance): the Llama layout with q/k/v biases."""

from sinktrain.stream.families.base import FamilyAdapter


class SeedOssAdapter(FamilyAdapter):
    family = "seed_oss"
    model_types = ("seed_oss",)
