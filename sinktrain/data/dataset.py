"""`TokenDataset`: fixed-length training samples from a prepared data directory, in a seeded global order.

The split's shards are one token stream; sample j (file order) is tokens [j*L, (j+1)*L), L = sample_len,
so samples never overlap and may cross document (EOD) and shard boundaries. The training order is a
stream of positions p = 0, 1, 2, ...: position p is sample perm_e[p mod n] with n = len(ds),
epoch e = p // n and perm_e = np.random.default_rng([seed, e]).permutation(n). Optimizer step s with
global batch G takes positions s*G .. s*G+G-1, so sample i of step s depends on (seed, s, i, G) only:
resuming at any step, or splitting G over any number of ranks, sees the same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sinktrain.data.manifest import SPLITS, read_manifest


class TokenDataset:
    def __init__(self, data_dir: str | Path, split: str = "train", sample_len: int = 2048, seed: int = 1234):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        if sample_len < 1:
            raise ValueError(f"sample_len must be >= 1, got {sample_len}")
        self.data_dir = Path(data_dir)
        self.split, self.sample_len, self.seed = split, int(sample_len), int(seed)
        self.manifest = read_manifest(self.data_dir)
        self.dtype = np.dtype(self.manifest["dtype"])
        self.eod_id = int(self.manifest["eod_id"])
        info = self.manifest["splits"][split]
        self.shards = [self._open_shard(name) for name in info["files"]]
        sizes = [len(s) for s in self.shards]
        self.num_tokens = int(sum(sizes))
        if self.num_tokens != info["tokens"]:
            raise ValueError(
                f"{self.data_dir}: {split} shards hold {self.num_tokens} tokens but the manifest says "
                f"{info['tokens']}; prepare the data again"
            )
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])  # token offset of each shard
        self.num_samples = self.num_tokens // self.sample_len
        if self.num_samples == 0:
            raise ValueError(
                f"{self.data_dir}: the {split} split has {self.num_tokens} tokens, fewer than one sample of "
                f"{self.sample_len}; prepare more data (or a larger --val-fraction) or use a shorter sequence"
            )
        self._perm_cache: dict[int, np.ndarray] = {}

    # Loader workers started by spawn or forkserver (Python 3.14's default on Linux) receive the dataset
    # pickled. A memmap pickles as a copy of its whole file, and the permutation cache holds 8 bytes a
    # sample: pass the folder instead, and each worker maps the same files again.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("shards", "_perm_cache")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _perm_cache={})
        self.shards = [self._open_shard(name) for name in self.manifest["splits"][self.split]["files"]]
        if sum(len(s) for s in self.shards) != self.num_tokens:
            raise ValueError(f"{self.data_dir}: the {self.split} shards changed while training read them; "
                             f"prepare the data again")

    def _open_shard(self, name: str) -> np.memmap:
        path = self.data_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"shard {str(path)!r} named in the manifest is missing; prepare the data again")
        if path.stat().st_size % self.dtype.itemsize:
            raise ValueError(f"shard {str(path)!r} is truncated; prepare the data again")
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(path, dtype=self.dtype, mode="r")

    def __len__(self) -> int:
        return self.num_samples

    # ------------------------------------------------------------ file order

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the split's stream, as int64 (crossing shard boundaries if needed)."""
        if not 0 <= start <= stop <= self.num_tokens:
            raise IndexError(f"token range [{start}, {stop}) outside [0, {self.num_tokens})")
        out = np.empty(stop - start, dtype=np.int64)
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            offset = pos - self._starts[shard]
            take = min(stop - pos, len(self.shards[shard]) - offset)
            out[pos - start: pos - start + take] = self.shards[shard][offset: offset + take]
            pos += take
            shard += 1
        return out

    def sequential(self, i: int) -> np.ndarray:
        """Sample `i` in file order (validation), int64 [sample_len]."""
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} outside [0, {self.num_samples}) of the {self.split} split")
        return self.tokens(i * self.sample_len, (i + 1) * self.sample_len)

    __getitem__ = sequential

    # ------------------------------------------------------------ seeded global order

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of samples in `epoch`; a pure function of (seed, epoch, len(ds))."""
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            # Steps move forward: keep this epoch and a neighbour (a batch may straddle two).
            self._perm_cache = {e: p for e, p in self._perm_cache.items() if abs(e - epoch) == 1}
            self._perm_cache[epoch] = perm
        return perm

    def sample_index(self, position: int) -> int:
        """File-order index of the sample at global `position` of the training stream."""
        if position < 0:
            raise IndexError(f"position must be >= 0, got {position}")
        epoch, k = divmod(int(position), self.num_samples)
        return int(self.permutation(epoch)[k])

    def sample_at(self, position: int) -> np.ndarray:
        """The sample at global `position` of the training stream (position = step * G + i)."""
        return self.sequential(self.sample_index(position))

    def global_sample(self, step: int, i: int, global_batch_size: int) -> np.ndarray:
        """Sample `i` (0 <= i < G) of optimizer step `step`: int64 [sample_len]."""
        if not 0 <= i < global_batch_size:
            raise IndexError(f"sample {i} outside the global batch of {global_batch_size}")
        if step < 0:
            raise IndexError(f"step must be >= 0, got {step}")
        return self.sample_at(step * global_batch_size + i)

    def global_batch(self, step: int, global_batch_size: int) -> np.ndarray:
        """All G samples of step `step`: int64 [G, sample_len]."""
        return np.stack([self.global_sample(step, i, global_batch_size) for i in range(global_batch_size)])

    def rank_batch(self, step: int, global_batch_size: int, rank: int, world_size: int) -> np.ndarray:
        """Rank `rank`'s contiguous share of step `step`: samples [rank*B, (rank+1)*B) of the global batch,
        B = G // world_size; int64 [B, sample_len]. The union over ranks is exactly the global batch."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        if global_batch_size % world_size:
            raise ValueError(
                f"global batch size {global_batch_size} is not divisible by world size {world_size}; "
                f"pick a global batch that is a multiple of the number of ranks"
            )
        per_rank = global_batch_size // world_size
        first = rank * per_rank
        return np.stack([self.global_sample(step, i, global_batch_size) for i in range(first, first + per_rank)])

    # ------------------------------------------------------------ compatibility with the model's tokenizer

    def check_compatible(self, tokenizer_vocab_size: int, tokenizer_sha256: str | None = None) -> None:
        """Raise ValueError if these token ids were made by another tokenizer than the one training uses."""
        tok = self.manifest["tokenizer"]
        if tokenizer_sha256 is not None and tokenizer_sha256 != tok["sha256"]:
            from sinktrain.data.manifest import HASHED_BEFORE_ADDED_TOKENS
            from sinktrain.data.tokenizer import hashed_before_added_tokens

            if hashed_before_added_tokens(tokenizer_sha256, tok["sha256"]):  # (not another tokenizer: say so)
                raise ValueError(f"{self.data_dir} {HASHED_BEFORE_ADDED_TOKENS}; prepare the data again (sinktrain "
                                 f"data prepare ... --overwrite true)")
            raise ValueError(
                f"{self.data_dir} was tokenized with tokenizer {tok['spec']!r} (sha256 {tok['sha256'][:12]}…), "
                f"not the training tokenizer (sha256 {tokenizer_sha256[:12]}…); "
                f"prepare the data with the same tokenizer"
            )
        if int(tokenizer_vocab_size) != int(tok["vocab_size"]):
            raise ValueError(
                f"{self.data_dir} was tokenized with a {tok['vocab_size']}-id vocabulary but the model expects "
                f"{tokenizer_vocab_size}; prepare the data with the model's tokenizer"
            )
