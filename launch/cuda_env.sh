# Sourced by the launch scripts. DeepSpeed's op builder parses TORCH_CUDA_ARCH_LIST as numbers and fails on
# an arch-specific suffix ("9.0a": ValueError: invalid literal for int() with base 10: '0a'), after which
# FusedAdam silently falls back to torch AdamW. Drop the suffix; the generic arch builds the same kernels here.
if [[ -n "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  TORCH_CUDA_ARCH_LIST=$(sed -E 's/([0-9]+\.[0-9]+)a/\1/g' <<<"$TORCH_CUDA_ARCH_LIST")
  export TORCH_CUDA_ARCH_LIST
fi
