"""Every command in the README's bash blocks runs as written in a new shell in the project root.

No server is started here: each command's program must exist in the checkout (a make target,
`.venv/bin/clinrisk` with a subcommand and options it accepts, a script, a file it reads). The
local-stack test runs the README's curl commands against a real stack.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from clinrisk.cli import main
from support import REPO

README = REPO / "README.md"
# Programs a reader has on any machine, or that the compose test covers.
OUTSIDE = {"docker", "docker-compose", "open", "xdg-open", "echo", "source"}


def bash_blocks(text: str) -> list[str]:
    """The body of every ```bash block (also indented ones inside lists)."""
    return [
        "\n".join(line[len(indent) :] for line in body.splitlines())
        for indent, body in re.findall(r"^( *)```bash\n(.*?)^\1```", text, flags=re.M | re.S)
    ]


def commands(block: str) -> list[tuple[list[str], str]]:
    """Each shell command of a block: its tokens (comments dropped) and its text as written."""
    found, pending = [], ""
    for line in block.splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.rstrip().endswith("\\"):
            continue
        try:
            tokens = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if tokens:
            found.append((tokens, pending))
        pending = ""
    assert not pending, f"unterminated command: {pending}"
    return found


def readme_commands() -> list[list[str]]:
    return [tokens for block in bash_blocks(README.read_text()) for tokens, _ in commands(block)]


def segments(tokens: list[str]) -> list[list[str]]:
    """The commands of a pipeline."""
    parts, current = [], []
    for token in tokens:
        if token in ("|", "&&", ";"):
            parts.append(current)
            current = []
        else:
            current.append(token)
    return [*parts, current]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][\w-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def check_clinrisk(args: list[str]) -> None:
    """Resolve the subcommand and parse its options as click would, without running it."""
    command, name, ctx = main, "clinrisk", click.Context(main)
    while isinstance(command, click.Group):
        if command.invoke_without_command and (not args or args[0].startswith("-")):
            break  # a group that runs on its own (`clinrisk models --json`): parse its options
        assert args, f"`clinrisk {name}` needs a subcommand"
        name, args = args[0], args[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"no command `{name}`"
        ctx = click.Context(command, parent=ctx)
    with command.make_context(name, list(args)):
        pass


def check(tokens: list[str]) -> None:
    """One command of a pipeline works as written from the project root."""
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):
        tokens = tokens[1:]  # VAR=value before a command sets its environment
    program, args = tokens[0], tokens[1:]
    if program == "make":
        targets = [a for a in args if "=" not in a and not a.startswith("-")]
        assert targets and set(targets) <= make_targets(), f"unknown make target in {tokens}"
    elif program == ".venv/bin/clinrisk":
        check_clinrisk(args)
    elif program == ".venv/bin/python":
        assert (REPO / args[0]).is_file(), args[0]
    elif program == "curl":
        for value in (a.removeprefix("@") for a in args if a.startswith("@")):
            assert (REPO / value).is_file(), f"curl reads {value}, which does not exist"
    elif program == "cp":
        assert (REPO / args[0]).is_file(), args[0]
    else:
        assert program in OUTSIDE, f"`{program}` is not on PATH in a new shell: {shlex.join(tokens)}"


@pytest.mark.parametrize("tokens", readme_commands(), ids=lambda tokens: shlex.join(tokens)[:60])
def test_each_readme_command_works_as_written(tokens):
    """It finds the program, subcommand, options and input files of every README command."""
    for segment in segments(tokens):
        check(segment)


def test_the_readme_commands_are_all_found():
    """It reads the multi-line curl commands whole, so no command is missed or cut."""
    found = readme_commands()
    curls = [t for t in found if t[0] == "curl"]
    assert any("@examples/patient.json" in t for t in curls)
    assert any(t[-1] == "http://127.0.0.1:8000/predict" and '"smoking_status"' in " ".join(t) for t in curls)
    assert [".venv/bin/clinrisk", "flows", "run", "monitor", "--wait"] in found


@pytest.mark.parametrize(
    "tokens",
    [
        ["prefect", "deployment", "run", "retrain/retrain"],
        ["clinrisk", "train"],
        [".venv/bin/clinrisk", "flows", "run", "retrain", "--no-such-option"],
        [".venv/bin/clinrisk", "models", "--no-such-option"],
        [".venv/bin/clinrisk", "no-such-command"],
        ["make", "no-such-target"],
        ["curl", "-d", "@patient.json", "http://127.0.0.1:8000/predict"],
    ],
)
def test_a_command_that_would_fail_in_a_new_shell_is_caught(tokens):
    """It fails for a program not on PATH, an unknown subcommand, option or target, a missing file."""
    with pytest.raises((AssertionError, click.ClickException)):
        check(tokens)


def readme_curls_for(service_url: str, home: Path) -> list[str]:
    """The README's curl commands to the local stack, pointed at a stack on other ports and home."""
    found = [text for block in bash_blocks(README.read_text()) for tokens, text in commands(block)]
    return [
        text.replace("http://127.0.0.1:8000", service_url).replace(".clinrisk/", f"{home}/")
        for text in found
        if text.startswith("curl ") and "http://127.0.0.1:8000" in text and ".clinrisk/admin-password" in text
    ]
