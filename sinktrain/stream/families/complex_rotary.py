"""Rotary embeddings written with complex numbers (Llama 4, DeepSeek-V2): the rotary module returns `freqs_cis`,
one complex factor per pair of adjacent dims (m·e^{i·angle}), and the modeling file's `apply_rotary_emb(xq, xk,
freqs_cis)` multiplies each pair, read as a complex number, by it.

The evaluator and the sink caches speak (cos, sin): here they are the real and imaginary parts of freqs_cis, kept
in float32 whatever the model's dtype (the model multiplies in complex64, so nothing is lost on the way), and the
rotation rebuilds freqs_cis from them and calls the model's own function. R(-p) is then the conjugate (sin -> -sin),
exactly as for cos/sin rotary."""

from __future__ import annotations

import torch


class ComplexRotary:
    """Mixed in before FamilyAdapter. `rotary_seq_major`: whether the model's function takes [batch, seq, heads, d]
    (Llama 4) or [batch, heads, seq, d] (DeepSeek-V2)."""

    rotary_function = "apply_rotary_emb"
    rotary_seq_major = True

    def rotated_dims(self, cos):
        return 2 * int(cos.shape[-1])  # one complex factor per pair of dims

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype, kind=None):
        """Real and imaginary parts of freqs_cis [n, rotary_dim / 2] at integer positions [n], float32."""
        n, device = positions.shape[0], positions.device
        if kind == "nope":  # the factor 1: the model's function leaves q and k as they are
            return (torch.ones(n, self.head_dim // 2, device=device), torch.zeros(n, self.head_dim // 2, device=device))
        if n == 0:
            cos, sin = self.cos_sin(positions.new_zeros(1), dtype, kind)
            return cos[:0], sin[:0]
        freqs = self.rotary_module(torch.empty(0, dtype=dtype, device=device), positions[None])[0]
        return freqs.real.contiguous(), freqs.imag.contiguous()

    def _rotate(self, x, cos, sin, seq_major):
        freqs = torch.complex(cos.float(), sin.float())[None]  # [1, n, rotary_dim / 2]
        if seq_major != self.rotary_seq_major:
            x = x.transpose(0, 1)
        one_head = x[None, :, :1] if self.rotary_seq_major else x[None, :1]  # the key slot: one head, not a copy
        rotated, _ = self._apply_rotary(x[None], one_head, freqs)
        return rotated[0] if seq_major == self.rotary_seq_major else rotated[0].transpose(0, 1)
