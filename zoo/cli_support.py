"""Shared click plumbing: one clear error line, exit codes, --debug."""

from __future__ import annotations

import json
import sys

import click

from .errors import ScoreZooError


class ErrorHandlingGroup(click.Group):
    """A click group that turns ``ScoreZooError`` into one line and exit 1.

    ``--debug`` (a group option) re-raises instead, for a full traceback.
    Usage errors keep click's exit code 2.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.append(
            click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                         callback=_remember_debug, help="Show full tracebacks on errors.")
        )

    def main(self, *args, **kwargs):
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, standalone_mode=False, **{k: v for k, v in kwargs.items() if k != "standalone_mode"})
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except (ScoreZooError, FileExistsError, PermissionError, IsADirectoryError) as e:
            if _DEBUG["on"]:
                raise
            click.echo(f"Error: {_one_line(e)}", err=True)
            sys.exit(1)


_DEBUG = {"on": False}


def _remember_debug(ctx, param, value):
    if value:
        _DEBUG["on"] = True
    return value


def _one_line(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return " ".join(text.split())


def echo_json(obj) -> None:
    """Print ``obj`` as JSON on stdout (the ``--json`` output of commands)."""
    click.echo(json.dumps(obj, indent=2, default=str))
