"""`sinktrain chat` from a scripted JSONL conversation: the fed tokens are exactly the chat template's
rendering of the whole conversation (while it fits the cache), the cache stays at C entries past it, and bad
input is one line."""

from __future__ import annotations

import json

import pytest
from gen_helpers import CHATML, tiny_folder

from sinktrain.cli import main
from sinktrain.generate.chat import TemplateTurns


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    return {"chat": tiny_folder(root, template=True), "plain": tiny_folder(root)}


def write_script(path, turns):
    path.write_text("".join(json.dumps(t) + "\n" for t in turns))
    return str(path)


def test_turn_texts_concatenate_to_the_template_rendering(folders):
    tok = folders["chat"][2]
    turns = TemplateTurns(tok, "Be brief.")
    users, replies = ["Hello there", "And then?", "Bye"], ["Hi! How", " are you"]
    text = (
        turns.first(users[0])
        + replies[0]
        + turns.next(replies[0], users[1])
        + replies[1]
        + turns.next(replies[1], users[2])
    )
    messages = [{"role": "system", "content": "Be brief."}]
    for u, r in zip(users, replies + [None]):
        messages.append({"role": "user", "content": u})
        if r is not None:
            messages.append({"role": "assistant", "content": r})
    assert text == tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_scripted_chat_streams_past_the_cache(folders, tmp_path, capsys):
    path = str(folders["chat"][0])
    script = write_script(tmp_path / "s.jsonl", [{"user": "Who are you?"}, {"role": "user", "content": "Go on."}] * 4)
    log = tmp_path / "log.jsonl"
    rc = main(
        ["chat", path, "--script", script, "--cache", "48", "--sinks", "4", "--max-new-tokens", "12", "--out", str(log)]
    )
    out = capsys.readouterr()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rc == 0 and len(rows) == 8 and out.out.count("USER: ") == 8
    assert rows[-1]["tokens_seen"] > 3 * 48  # far past the cache
    assert {r["cache_entries"] for r in rows[2:]} == {48}
    assert all(r["user"] in out.out for r in rows)


@pytest.mark.parametrize(
    "case, phrase",
    [
        ("no-template", "has no chat template; pass --chat-template FILE"),
        ("missing-script", "chat script '/nonexistent/s.jsonl' does not exist"),
        ("bad-line", "line 2 is not JSON"),
        ("latin-1", "is not UTF-8 text (byte 0xe9 at offset 13); convert it first"),
        ("no-user", 'line 1: expected {"user": "..."}'),
    ],
)
def test_bad_input_is_one_line(folders, tmp_path, capsys, case, phrase):
    folder = folders["plain" if case == "no-template" else "chat"][0]
    script = {
        "missing-script": "/nonexistent/s.jsonl",
        "no-user": write_script(tmp_path / "s.jsonl", [{"assistant": "hi"}]),
        "latin-1": tmp_path / "latin.jsonl",
    }.get(case)
    if case == "latin-1":
        script.write_bytes('{"user": "café"}\n'.encode("latin-1"))
    if script is None:
        script = tmp_path / "s.jsonl"
        script.write_text('{"user": "hi"}\n' + ("{oops\n" if case == "bad-line" else ""))
    rc = main(["chat", str(folder), "--script", str(script)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0], err


def test_chat_template_flag_supplies_one(folders, tmp_path, capsys):
    template = tmp_path / "t.jinja"
    template.write_text(CHATML)
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    assert (
        main(
            [
                "chat",
                str(folders["plain"][0]),
                "--script",
                script,
                "--chat-template",
                str(template),
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("USER: hi\nASSISTANT: ")


def test_interactive_chat_reads_stdin(folders, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\n\nHow are you?\n"))
    assert main(["chat", str(folders["chat"][0]), "--max-new-tokens", "4", "--cache", "32", "--sinks", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.count("USER: ") == 2 and "USER: How are you?" in out.out and "[chat] turn 2" in out.err


def test_an_existing_transcript_is_kept(folders, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("an earlier conversation\n")
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    chat = ["chat", str(folders["chat"][0]), "--script", script, "--max-new-tokens", "2"]
    for out, phrase in [(log, f"--out {str(log)!r} exists; pass --overwrite"), (tmp_path, "is a folder")]:
        rc = main([*chat, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and phrase in err[0], err
    assert log.read_text() == "an earlier conversation\n"
    assert main([*chat, "--out", str(log), "--overwrite"]) == 0
    assert [json.loads(line)["user"] for line in log.read_text().splitlines()] == ["hi"]
