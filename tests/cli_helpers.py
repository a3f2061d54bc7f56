"""Driving the `goldenlayers` command in tests without depending on the terminal width or on path lengths:
`invoke` runs it at a fixed width (COLUMNS) and `flat` undoes rich's line wrapping, so that a message holding a
long temporary path compares the same whatever the path's length."""

from typer.testing import CliRunner

from goldenlayers.cli import app

COLUMNS = "120"


def invoke(args, env: dict | None = None, **kw):
    """The result of `goldenlayers ARGS` (each arg str()-ed) at a fixed terminal width."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": COLUMNS, **(env or {})}, **kw)


def flat(result) -> str:
    """The command's output with every run of whitespace (rich's wrapping included) made one space."""
    return " ".join(result.output.split())
