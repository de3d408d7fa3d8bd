"""Start a command once the stack's initialisation is done (its ready file exists).

    python -m clinrisk.stack.after READY_FILE -- COMMAND...

The local stack starts the web service this way, so that it loads the champion the
initialisation has just trained instead of waiting for its next poll of the registry.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("ready_file", type=click.Path(path_type=Path))
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def main(ready_file: Path, command: tuple[str, ...]) -> None:
    """Wait for READY_FILE, then become COMMAND."""
    while not ready_file.exists():
        time.sleep(0.5)
    os.execvp(command[0], list(command))


if __name__ == "__main__":
    main()
