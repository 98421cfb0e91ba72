"""`wallet COMMAND --help` describes every option and shows its default."""

from __future__ import annotations

import argparse

from wallet.cli import build_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_of_every_command_has_help_that_shows_its_default() -> None:
    commands = _subcommands()
    assert {"migrate", "serve", "worker", "dev", "export-schema"} <= set(commands)
    for name, command in commands.items():
        assert command.description, name
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"wallet {name} {action.option_strings}"
            if not action.option_strings:
                continue  # a positional argument has no default
            assert f"(default: {action.default})" in " ".join(text.split()), (
                f"wallet {name} {action.option_strings}"
            )
