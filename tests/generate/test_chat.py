"""`sinktrain chat` from a scripted JSONL conversation: the fed tokens are exactly the chat template's
rendering of the whole conversation (while it fits the cache), the cache stays at C entries past it, and bad
input is one line."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

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


@pytest.mark.parametrize("reply", ["a", "user", "Paris."])
def test_next_turn_is_the_text_after_the_reply_whatever_the_reply(folders, reply):
    # "a" and "user" also occur inside ChatML's markers (<|im_start|>user): the text fed must still start right
    # after the reply, not at such a marker.
    turns = TemplateTurns(folders["chat"][2], None)
    assert turns.next(reply, "Why?") == "<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"


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
        ("script-folder", "is a folder; pass a JSONL file of user turns"),
    ],
)
def test_bad_input_is_one_line(folders, tmp_path, capsys, case, phrase):
    folder = folders["plain" if case == "no-template" else "chat"][0]
    script = {
        "missing-script": "/nonexistent/s.jsonl",
        "no-user": write_script(tmp_path / "s.jsonl", [{"assistant": "hi"}]),
        "latin-1": tmp_path / "latin.jsonl",
        "script-folder": tmp_path,
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


def test_an_out_that_is_no_regular_file_is_refused_and_kept(folders, tmp_path, capsys, weights_never_load):
    """--overwrite replaced a FIFO (as root, a device such as /dev/null) with the transcript, a regular file."""
    import os
    import stat

    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rc = main(["chat", str(folders["chat"][0]), "--script", script, "--out", str(fifo), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain chat: error: --out {str(fifo)!r} is not a regular file (a FIFO); pass the "
                               f"path of a regular file or a new one"], err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_device_out_is_refused():
    """Checked on the check alone: the run it guards, as root, replaced /dev/null."""
    from sinktrain.util.outputs import check_out_file

    with pytest.raises(FileExistsError) as e:
        check_out_file("/dev/null", overwrite=True)
    assert str(e.value) == ("--out '/dev/null' is not a regular file (a character device); pass the path of a regular "
                            "file or a new one")


def test_an_empty_out_says_it_is_empty(folders, tmp_path, capsys, weights_never_load):
    """It said "--out '.' is a folder"."""
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    rc = main(["chat", str(folders["chat"][0]), "--script", script, "--out", ""])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["sinktrain chat: error: --out is empty; give the output file's path"], err


def test_the_transcript_never_replaces_what_the_run_reads(folders, tmp_path, capsys):
    """--out --overwrite over the model's config.json, the script or the template wrote the transcript there."""
    model = tmp_path / "model"
    shutil.copytree(folders["chat"][0], model)
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    before = {p: p.read_bytes() for p in [*model.iterdir(), Path(script), template]}
    chat = ["chat", str(model), "--script", script, "--chat-template", str(template), "--max-new-tokens", "2",
            "--overwrite"]
    for out, phrase in [(model / "config.json", f"lies inside model {str(model)!r}"),
                        (model / "new.jsonl", f"lies inside model {str(model)!r}"),
                        (Path(script), f"is the --script file {script!r}"),
                        (template, f"is the --chat-template file {str(template)!r}")]:
        rc = main([*chat, "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"sinktrain chat: error: --out {str(out)!r} {phrase}, which the run reads; "
                                   f"choose {'an --out outside it' if 'inside' in phrase else 'another --out'}"]
    assert {p: p.read_bytes() for p in [*model.iterdir(), Path(script), template]} == before


def test_files_beside_the_transcript_are_never_written(folders, tmp_path, capsys):
    """The transcript was written under the fixed name <stem>.tmp<suffix> (a file of the user's of that name was
    overwritten, then removed; a link of that name wrote into the file it points to), and the lock <out>.lock was
    emptied and removed, through a link too."""
    model = tmp_path / "model"
    shutil.copytree(folders["chat"][0], model)
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    chat = ["chat", str(model), "--script", script, "--max-new-tokens", "2"]
    (tmp_path / "notes.tmp.jsonl").write_text("my notes\n")
    (tmp_path / "run2.tmp.jsonl").symlink_to(model / "config.json")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for out in ("notes.jsonl", "run2.jsonl"):
        assert main([*chat, "--out", str(tmp_path / out)]) == 0
        assert [json.loads(line)["user"] for line in (tmp_path / out).read_text().splitlines()] == ["hi"]
    assert (tmp_path / "notes.tmp.jsonl").read_text() == "my notes\n"
    assert not list(tmp_path.glob(".*.tmp.jsonl"))  # the transcripts' own temporary files are gone
    (tmp_path / "x.jsonl.lock").write_text("keep\n")
    (tmp_path / "y.jsonl.lock").symlink_to(model / "tokenizer_config.json")
    capsys.readouterr()
    for out, phrase in (("x.jsonl", f"{str(tmp_path / 'x.jsonl.lock')!r} exists and is not a sinktrain lock file; "
                                    f"move it away or choose another --out"),
                        ("y.jsonl", f"its lock file {str(tmp_path / 'y.jsonl.lock')!r} is a symbolic link, which "
                                    f"sinktrain never makes; remove it or choose another --out")):
        rc = main([*chat, "--out", str(tmp_path / out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"sinktrain chat: error: --out {str(tmp_path / out)!r}: {phrase}"], err
        assert not (tmp_path / out).exists()
    assert (tmp_path / "x.jsonl.lock").read_text() == "keep\n" and (tmp_path / "y.jsonl.lock").is_symlink()
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_sigterm_keeps_the_earlier_transcript_and_exits_143(folders, tmp_path, capsys, monkeypatch):
    """A SIGTERM (the CLI raises Terminated, a KeyboardInterrupt) was taken for Ctrl-C, which ends a conversation:
    the run exited 0 and replaced the earlier transcript with the turns so far."""
    from sinktrain.generate.decode import Decoder
    from sinktrain.util.errors import Terminated

    log = tmp_path / "log.jsonl"
    log.write_text('{"earlier": "complete"}\n')
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}, {"user": "more"}, {"user": "and more"}])
    real, calls = Decoder.stream, []

    def stream(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Terminated()
        yield from real(self, *args, **kwargs)

    monkeypatch.setattr(Decoder, "stream", stream)
    rc = main(["chat", str(folders["chat"][0]), "--script", script, "--max-new-tokens", "2", "--out", str(log),
               "--overwrite"])
    assert rc == 143 and capsys.readouterr().err.strip().splitlines()[-1] == "sinktrain chat: terminated"
    assert log.read_text() == '{"earlier": "complete"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "s.jsonl"]


def test_script_lines_json_allows_are_read_and_others_are_one_line(folders, tmp_path, capsys):
    """Lines end at \\n only (U+2028 and U+0085 are allowed raw inside JSON strings); a lone surrogate escape and
    nesting too deep for the parser were tracebacks."""
    from sinktrain.generate.chat import read_script

    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"user": "a\u2028b\u0085c"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_script(str(script)) == ["a\u2028b\u0085c"]
    for text, why in (('{"user": "a\\ud800b"}', "line 1: the text holds a lone surrogate (\\ud800), which is not "
                                                 "a Unicode character; fix the line"),
                      ("[" * 100000, "line 1 is not JSON (nested too deeply); write one JSON object per line")):
        script.write_text(text + "\n")
        with pytest.raises(ValueError) as e:
            read_script(str(script))
        assert str(e.value) == f"chat script {script} {why}"


def test_a_script_with_a_byte_order_mark_is_read(folders, tmp_path, capsys):
    script = tmp_path / "bom.jsonl"
    script.write_bytes('{"user": "hi"}\n'.encode("utf-8-sig"))
    assert main(["chat", str(folders["chat"][0]), "--script", str(script), "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out.startswith("USER: hi\nASSISTANT: ")


# Mistral's template: roles must alternate user/assistant from the first message, so a system message breaks it.
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")


@pytest.mark.parametrize("template, system, phrase", [
    ("{% for m in messages %", "Be brief.", "t.jinja' fails at line 1: unexpected 'end of template'; fix the template"),
    ("{{ messages[0].nope.x }}", None, "t.jinja' fails: 'dict object' has no attribute 'nope'; fix the template"),
    (MISTRAL, "Be brief.", "t.jinja' fails: Conversation roles must alternate user/assistant/user/assistant/...; "
                           "fix the template or drop --system (it renders without a system message)"),
    (" \n", None, "t.jinja' is empty; write a Jinja chat template in it"),
])
def test_a_bad_template_is_one_line_before_the_weights_load(folders, tmp_path, capsys, weights_never_load,
                                                              template, system, phrase):
    (tmp_path / "t.jinja").write_text(template)
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    rc = main(["chat", str(folders["plain"][0]), "--script", script, "--chat-template", str(tmp_path / "t.jinja"),
               *(["--system", system] if system else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"error: chat template '{tmp_path / 't.jinja'}" in err[0], err
    assert phrase in err[0] and ("drop --system" in err[0]) == ("drop --system" in phrase), err


def test_mistral_template_chats_without_a_system_message(folders, tmp_path, capsys):
    (tmp_path / "t.jinja").write_text(MISTRAL)
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}, {"user": "more"}])
    assert main(["chat", str(folders["plain"][0]), "--script", script, "--chat-template", str(tmp_path / "t.jinja"),
                 "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out.count("USER: ") == 2


@pytest.mark.parametrize("stream, phrase", [("stdin", "stdin is closed; type the user turns on stdin or pass --script"),
                                            ("stdout", "stdout is closed; give chat an open stdout")])
def test_a_closed_stream_is_one_line_before_the_weights_load(folders, monkeypatch, capsys, weights_never_load,
                                                              stream, phrase):
    monkeypatch.setattr(f"sys.{stream}", None)  # what Python sets for `<&-` / `>&-`
    rc = main(["chat", str(folders["chat"][0])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0], err


def test_a_stdin_line_that_is_not_utf8_is_one_line(folders, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Hello\ncafé\n".encode("latin-1"))))
    rc = main(["chat", str(folders["chat"][0]), "--max-new-tokens", "2", "--cache", "32", "--sinks", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "[chat] turn 1:" in err and "Traceback" not in err, err
    assert "error: stdin line 2 is not UTF-8 text (byte 0xe9 at offset 3); send UTF-8" in err.splitlines()[-1], err


def test_a_system_message_that_is_not_utf8_is_one_line_before_the_weights_load(folders, tmp_path, capsys,
                                                                                weights_never_load):
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    rc = main(["chat", str(folders["chat"][0]), "--script", script, "--system", "caf\udce9"])  # Latin-1 "café"
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["sinktrain chat: error: --system is not UTF-8 text (byte 0xe9 at offset 3); pass "
                               "UTF-8 text (e.g. through iconv -f latin1 -t utf-8)"], err


def test_a_missing_out_folder_is_refused_before_the_weights_load(folders, tmp_path, capsys, weights_never_load):
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    out = tmp_path / "missing" / "log.jsonl"
    rc = main(["chat", str(folders["chat"][0]), "--script", script, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"folder '{tmp_path / 'missing'}' does not exist" in err[0], err


def test_a_failed_run_leaves_the_earlier_transcript_unchanged(folders, tmp_path, capsys):
    # A template that fails on the second turn's text only (it renders the probe conversation).
    (tmp_path / "t.jinja").write_text("{% for m in messages %}{% if m['content'] == 'boom' %}"
                                      "{{ raise_exception('no boom') }}{% endif %}{% endfor %}" + CHATML)
    log = tmp_path / "log.jsonl"
    log.write_text("an earlier conversation\n")
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}, {"user": "boom"}])
    rc = main(["chat", str(folders["plain"][0]), "--script", script, "--chat-template", str(tmp_path / "t.jinja"),
               "--max-new-tokens", "2", "--out", str(log), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "fails: no boom" in err[-1], err
    assert log.read_text() == "an earlier conversation\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "s.jsonl", "t.jinja"]  # no temporary file


def test_ctrl_c_ends_the_conversation_and_keeps_its_turns(folders, tmp_path, monkeypatch, capsys):
    def typed():
        yield b"Hello\n"
        raise KeyboardInterrupt

    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=typed()))
    log = tmp_path / "log.jsonl"
    log.write_text("an earlier conversation\n")
    rc = main(["chat", str(folders["chat"][0]), "--max-new-tokens", "2", "--out", str(log), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err and "[chat] interrupted: the conversation ends after 1 turn(s)" in err
    assert [json.loads(line)["user"] for line in log.read_text().splitlines()] == ["Hello"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_a_transcript_another_chat_is_writing_is_refused(folders, tmp_path, capsys, hold_output):
    """Two chats with one --out wrote one temporary file: the transcript mixed both, and one failed naming it."""
    log = tmp_path / "log.jsonl"
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    chat = ["chat", str(folders["chat"][0]), "--script", script, "--max-new-tokens", "2", "--out", str(log)]
    with hold_output(log):
        assert main(chat) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"sinktrain chat: error: --out {str(log)!r} is being written by another sinktrain process "
                       f"(pid 4242 on elsewhere); wait for it to end, or choose another --out"]
    assert not log.exists()
    assert main(chat) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "s.jsonl"]


def test_a_transcript_in_a_missing_folder_is_still_refused(folders, tmp_path, capsys):
    """The output lock makes the folders its lock file needs; chat's check of --out runs before it."""
    script = write_script(tmp_path / "s.jsonl", [{"user": "hi"}])
    log = tmp_path / "missing" / "log.jsonl"
    assert main(["chat", str(folders["chat"][0]), "--script", script, "--out", str(log)]) == 2
    assert "does not exist; create it or choose another --out" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]
