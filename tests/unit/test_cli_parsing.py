"""The command line's grammar: options that apply to every verb go before or after it; every verb's help says
what it does and shows an example."""

from __future__ import annotations

import pytest

from backup_pipeline.cli.parser import build_parser

# One valid command line per verb that reads the configuration (its positional arguments and required options).
CONFIGURED_VERBS = {
    "backup": [],
    "list": [],
    "info": ["latest"],
    "download": ["latest"],
    "diff": ["latest"],
    "verify": ["latest"],
    "restore": ["latest", "--target-db", "app_restored"],
    "prune": [],
    "status": [],
    "delete": ["app_manual_20260113_150000"],
    "follow": ["b7785b6c-c1c9-4d7f-b9b4-02f4c13084a9"],
}


@pytest.mark.parametrize("verb", sorted(CONFIGURED_VERBS))
def test_database_goes_before_or_after_the_verb(verb):
    rest = CONFIGURED_VERBS[verb]
    parser = build_parser()
    assert parser.parse_args(["--database", "shop", verb, *rest]).database == "shop"
    assert parser.parse_args([verb, *rest, "--database", "shop"]).database == "shop"
    assert parser.parse_args([verb, "--database", "shop", *rest]).database == "shop"
    assert parser.parse_args([verb, *rest]).database is None


@pytest.mark.parametrize("verb", [*sorted(CONFIGURED_VERBS), "demo", "install-client"])
def test_every_verb_help_has_a_description_and_an_example(verb, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([verb, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    usage, description = text.split("\n\n")[:2]
    assert usage.startswith(f"usage: backup-db {verb}")
    assert len(description.split()) >= 5 and not description.startswith(("options:", "positional")), description
    assert f"examples:\n  backup-db {verb}" in text


def test_the_main_help_lists_status_and_delete(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "status" in text and "delete" in text and "Exit codes: 0 done, 1 failed" in " ".join(text.split())
