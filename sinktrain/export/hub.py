"""Push an exported folder to the Hugging Face hub, one branch per training step (as Pythia's checkpoints are).

The token comes from the environment (HF_TOKEN) or `huggingface-cli login`, through huggingface_hub itself;
sinktrain never reads, prints or logs it. Failures are reported without the token and leave the export as is.
"""

from __future__ import annotations

from pathlib import Path

from sinktrain.util.errors import UserError


class PushError(UserError, RuntimeError):
    """The upload failed (network, login, permissions); the local export is untouched."""


def _scrub(text: str) -> str:
    """Remove the token from an error text, should a library ever echo it."""
    from huggingface_hub import get_token

    token = get_token()
    return text.replace(token, "***") if token else text


def files_to_upload(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def push_folder(folder: str | Path, repo_id: str, revision: str | None = None, private: bool = False,
                dry_run: bool = False) -> list[str]:
    """Create `repo_id` (if needed) and the branch `revision` (e.g. step1000), upload the folder's files.

    Returns the uploaded (or, with dry_run, the would-be uploaded) paths.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not an exported model folder (no config.json); run `sinktrain export` first")
    files = files_to_upload(folder)
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                          commit_message=f"sinktrain export {folder.name}")
    except Exception as e:  # network, auth, permissions: one message, never the token
        endpoint = getattr(api, "endpoint", "the hub")
        raise PushError(
            f"push of {folder} to {repo_id}{'@' + revision if revision else ''} at {endpoint} failed "
            f"({type(e).__name__}: {_scrub(str(e).splitlines()[0] if str(e) else '')}); check the network and "
            f"your login (HF_TOKEN or `hf auth login`). The local export is intact."
        ) from None
    return files
