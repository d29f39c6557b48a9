"""Shared click plumbing: one clear error line, exit codes, --debug."""

from __future__ import annotations

import json

import click

from .errors import ScoreZooError

# Errors a user can cause: printed as one line with exit code 1. OSError covers what the file system refuses
# (permissions, a read-only folder, a full disk) wherever it is not a WriteError already.
USER_ERRORS = (ScoreZooError, OSError)


def error_line(error: Exception) -> str:
    """The one line a CLI prints for a user error."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        cause = error.strerror[:1].lower() + error.strerror[1:]
        text = f"{where}{cause}; check the path, its permissions and the free space"
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


class ErrorHandlingGroup(click.Group):
    """A click group that prints user errors as one line and exits 1.

    The group gets a ``--debug`` option that shows the full traceback instead.
    Usage errors keep click's exit code 2.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                        callback=_remember_debug, help="Show full tracebacks on errors."))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            if ctx.meta.get("score_zoo.debug"):
                raise
            click.echo(f"Error: {error_line(e)}", err=True)
            if getattr(e, "details", None) and ctx.meta.get("score_zoo.verbose"):
                click.echo(e.details, err=True)
            ctx.exit(1)


def _remember_debug(ctx: click.Context, param, value):
    ctx.meta["score_zoo.debug"] = bool(value)
    return value


def _remember_verbose(ctx: click.Context, param, value):
    ctx.meta["score_zoo.verbose"] = bool(value)
    return value


def verbose_option(command):
    """``--verbose``: on an error, print its details (what each source said, what to do) after its one line."""
    return click.option("--verbose", is_flag=True, expose_value=False, callback=_remember_verbose,
                        help="On an error, also print its details after the one-line message.")(command)


def echo_json(obj) -> None:
    """Print ``obj`` as JSON on stdout (the ``--json`` output of commands)."""
    click.echo(json.dumps(obj, indent=2, default=str))
