"""TokenDataset: samples are exact source spans; the global order is a pure function of (seed, step, i, G)."""

import subprocess
import sys

import numpy as np
import pytest

from sinktrain.data import TokenDataset, load_tokenizer, tokenizer_hash

from data_helpers import run_prepare

SEQ_LEN, NUM_SINK_TOKENS = 64, 1
SAMPLE_LEN = SEQ_LEN - NUM_SINK_TOKENS  # with the sink prepended, a training sequence is exactly SEQ_LEN


@pytest.fixture(scope="module")
def book_dir(tmp_path_factory, persuasion):
    """Two documents (two chapters of Persuasion, ASCII) in one train split, so samples cross an EOD."""
    root = tmp_path_factory.mktemp("book")
    chapters = persuasion.split("Chapter ")
    docs = ["Chapter " + chapters[1], "Chapter " + chapters[2]]
    for k, doc in enumerate(docs):
        (root / f"ch{k}.txt").write_text(doc)
    out = run_prepare([root / "ch0.txt", root / "ch1.txt"], root / "data", val_fraction=0)
    return out, docs


def test_decoded_sample_is_the_exact_source_span(book_dir, raw_tok):
    data_dir, docs = book_dir
    ds = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN, seed=3)
    # The independent stream: each document tokenized alone, EOD (0) after each.
    doc_ids = [raw_tok.encode(d, add_special_tokens=False).ids for d in docs]
    assert len(ds) == (len(doc_ids[0]) + len(doc_ids[1]) + 2) // SAMPLE_LEN
    first_doc_samples = (len(doc_ids[0]) + 1) // SAMPLE_LEN  # samples that lie inside document 0 (+ its EOD)

    rng = np.random.default_rng(0)
    checked = 0
    for step in rng.integers(0, 50, size=12):
        for i in (0, 3):
            sample = ds.global_sample(int(step), i, global_batch_size=4)
            assert sample.shape == (SAMPLE_LEN,) and sample.dtype == np.int64
            j = ds.sample_index(int(step) * 4 + i)
            if j >= first_doc_samples:
                continue  # spans EOD or lies in document 1: covered below
            # Characters before the sample = the decoded prefix; the sample is the text right after it.
            start = len(raw_tok.decode(doc_ids[0][: j * SAMPLE_LEN]))
            text = raw_tok.decode(sample.tolist())
            assert docs[0][start: start + len(text)] == text
            assert len(text) > SAMPLE_LEN  # real words, not a stub
            checked += 1
    assert checked >= 5

    # The sample that crosses the document boundary: end of doc 0, EOD, start of doc 1.
    j = first_doc_samples
    sample = ds.sequential(j).tolist()
    cut = sample.index(0)
    assert docs[0].endswith(raw_tok.decode(sample[:cut]))
    assert docs[1].startswith(raw_tok.decode(sample[cut + 1:]))


def test_ranks_see_exactly_the_global_batch_and_resume_reproduces(book_dir):
    data_dir, _ = book_dir
    G, steps = 8, 16  # 128 positions > len(ds) = 99: the run crosses an epoch boundary
    ds = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN, seed=11)
    assert steps * G > len(ds)
    single = [ds.rank_batch(s, G, rank=0, world_size=1) for s in range(steps)]
    for world in (2, 4, 8):
        for s in range(steps):
            ranks = [ds.rank_batch(s, G, rank=r, world_size=world) for r in range(world)]
            assert all(r.shape == (G // world, SAMPLE_LEN) for r in ranks)
            np.testing.assert_array_equal(np.concatenate(ranks), single[s])

    # The steps' batches, read back to file-order indices: epoch 0 visits every sample exactly once, and
    # epoch 1 starts over in another order.
    n = len(ds)
    index_of = {ds.sequential(j).tobytes(): j for j in range(n)}
    assert len(index_of) == n  # samples are distinct text
    order = [index_of[row.tobytes()] for row in np.concatenate(single)]
    assert sorted(order[:n]) == list(range(n))
    assert order[n:2 * n] != order[: len(order[n:2 * n])]
    assert order == [ds.sample_index(p) for p in range(steps * G)]

    # Resume at step 5 in a fresh object (no shared cache): identical to the uninterrupted run.
    resumed = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN, seed=11)
    for s in range(5, steps):
        np.testing.assert_array_equal(resumed.global_batch(s, G), single[s])
    # Another seed gives another order.
    other = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN, seed=12)
    assert not np.array_equal(other.global_batch(0, G), single[0])

    with pytest.raises(ValueError, match="global batch size 8 is not divisible by world size 3"):
        ds.rank_batch(0, G, rank=0, world_size=3)


RANK_SCRIPT = """
import sys, numpy as np
from sinktrain.data import TokenDataset
data_dir, rank, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ds = TokenDataset(data_dir, "train", sample_len={L}, seed=5)
np.save(out, np.stack([ds.rank_batch(s, 6, rank=rank, world_size=2) for s in range({k})]))
"""


def test_two_processes_together_see_the_one_rank_batches(book_dir, tmp_path):
    data_dir, _ = book_dir
    k = 7
    script = RANK_SCRIPT.format(L=SAMPLE_LEN, k=k)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(data_dir), str(r), str(tmp_path / f"r{r}.npy")])
             for r in (0, 1)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    r0, r1 = np.load(tmp_path / "r0.npy"), np.load(tmp_path / "r1.npy")
    one = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN, seed=5)
    for s in range(k):
        np.testing.assert_array_equal(np.concatenate([r0[s], r1[s]]), one.rank_batch(s, 6, 0, 1))


def test_a_pickled_dataset_carries_its_folder_not_its_tokens(book_dir, tmp_path):
    """Loader workers started by spawn or forkserver (Python 3.14's default) get the dataset pickled: a pickled
    memmap is a copy of the whole corpus (hundreds of GB for the Pile), once per worker."""
    import pickle
    import shutil

    data_dir = shutil.copytree(book_dir[0], tmp_path / "data")  # a copy: its shard is cut short below
    ds = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN, seed=11)
    ds.rank_batch(3, 8, 0, 1)  # fills the permutation cache (8 bytes a sample)
    blob = pickle.dumps(ds)
    assert ds.num_tokens * ds.dtype.itemsize > 6000 and len(blob) < 2000, len(blob)
    back = pickle.loads(blob)
    for s in (0, 3, 20):  # 20: another epoch
        np.testing.assert_array_equal(back.rank_batch(s, 8, 1, 2), ds.rank_batch(s, 8, 1, 2))
    np.testing.assert_array_equal(back.sequential(len(ds) - 1), ds.sequential(len(ds) - 1))

    files = ds.manifest["splits"]["train"]["files"]
    del ds, back  # unmap first: touching a mapped page past the new end of a file is SIGBUS
    shard = data_dir / files[0]
    shard.write_bytes(shard.read_bytes()[:-2])  # one token short: not the data the trainer checked
    with pytest.raises(ValueError, match="shards changed while training read them; prepare the data again"):
        pickle.loads(blob)


def test_validation_split_is_read_in_file_order(tmp_path, persuasion, raw_tok):
    (tmp_path / "book.txt").write_text(persuasion[:60000])
    out = run_prepare([tmp_path / "book.txt"], tmp_path / "data", txt_documents="paragraphs", val_fraction=0.3)
    val = TokenDataset(out, "val", sample_len=32)
    stream = np.concatenate([val.sequential(i) for i in range(len(val))])
    np.testing.assert_array_equal(stream, np.fromfile(out / "val-00000.bin", dtype=np.uint16)[: len(stream)])
    assert len(val) == val.manifest["splits"]["val"]["tokens"] // 32
    with pytest.raises(IndexError):
        val.sequential(len(val))


def test_check_compatible(book_dir):
    data_dir, _ = book_dir
    ds = TokenDataset(data_dir, "train", sample_len=SAMPLE_LEN)
    tok = load_tokenizer()
    ds.check_compatible(len(tok), tokenizer_hash(tok))  # the tokenizer that made it: fine
    with pytest.raises(ValueError, match="tokenized with a 50277-id vocabulary but the model expects 32000"):
        ds.check_compatible(32000)
    with pytest.raises(ValueError, match="not the training tokenizer"):
        ds.check_compatible(50277, "0" * 64)
