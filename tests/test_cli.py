"""The `irodori` command: training's subcommands are plug-ins (entry points), and a missing one says so."""
from __future__ import annotations

import pytest

from backend.tools import cli, extensions


def test_training_commands_are_entry_points_not_backend_imports():
    found = extensions.find(extensions.COMMANDS)
    assert {name: found[name] for name in ("train", "synth", "eval")} == {
        "train": "training.train", "synth": "training.synth", "eval": "training.eval"}
    assert not any(module.startswith("training") for module, _ in cli.SUBCOMMANDS.values())
    help_line = extensions.summary("training.eval")  # its docstring's first line, read without importing it
    assert help_line and not help_line.startswith(("(plug-in", "`"))


def test_a_plug_in_that_cannot_be_imported_is_named(monkeypatch, capsys):
    monkeypatch.setattr(extensions, "find", lambda group: {"train": "training.no_such_module"})
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'train' comes from training.no_such_module" in err and "irodori.commands" in err


def test_a_command_no_plug_in_provides_points_to_the_install(monkeypatch, capsys):
    monkeypatch.setattr(extensions, "find", lambda group: {})
    assert cli.main(["train", "config.json"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'train'" in err and "pip install -e ." in err
