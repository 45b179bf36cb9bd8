"""The command line's global options, declared once on the app and accepted before or after the command.

`delivery --url URL run ...` and `delivery run ... --url URL` mean the same: every command gets a copy of
the app's own options that records a value given after the command over the one before it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption


def _given_after_command(context: typer.Context, option: TyperOption, value: Any) -> Any:
    if value is not None and value is not False:  # a value, or a flag, given after the command
        context.obj.options[option.name] = value
    return value


def _as_global(option: TyperOption) -> TyperOption:
    """`option` as a command takes it: only from the command line, recorded for the whole invocation."""
    accepted = copy.copy(option)
    accepted.expose_value = False
    accepted.callback = _given_after_command
    accepted.envvar = None
    accepted.show_envvar = False
    accepted.show_default = False
    accepted.default = False if option.is_flag else None
    return accepted


def _flags_without_value(params: Iterable[Any]) -> None:
    """Typer shows a flag's type (`--plain <bool>`), which reads as taking a value: show none."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class GlobalOptionsGroup(TyperGroup):
    """A Typer app whose own options every command also accepts."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)
        _flags_without_value(params)
        return params

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not getattr(command, "takes_global_options", False):
            command.params.extend(_as_global(param) for param in self.params if isinstance(param, TyperOption))
            _flags_without_value([*command.params, command.get_help_option(ctx)])
            command.takes_global_options = True
        return command
