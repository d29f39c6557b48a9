"""EvaluationOptions is the one place an evaluation option's default and check live: the CLI is built from it."""

import dataclasses

import click
import pytest

from harness.cli import evaluate as evaluate_command
from harness.options import EvaluationOptions
from zoo.errors import ConfigError


def test_the_command_line_has_exactly_the_options_and_defaults_of_the_dataclass():
    """Breaks when an option is added to the CLI or the dataclass alone, or a default differs between them."""
    cli = {p.name: p.default for p in evaluate_command.params if isinstance(p, click.Option) and p.name != "as_json"}
    fields = {f.name: f.default for f in dataclasses.fields(EvaluationOptions) if not f.metadata["hidden"]}
    assert set(cli) == set(fields)
    assert {k: v for k, v in cli.items() if v is not None} == {k: v for k, v in fields.items() if v not in (None, ())}


@pytest.mark.parametrize("keywords, message", [
    (dict(n_examples=8.5), "--n-examples must be an integer, got 8.5"),
    (dict(n_examples="8"), "--n-examples must be an integer, got '8'"),
    (dict(n_examples=0), "--n-examples must be at least 1, got 0"),
    (dict(batch_size=0), "--batch-size must be at least 1, got 0"),
    (dict(seed=-1), "--seed must be at least 0, got -1"),
    (dict(workers=True), "--workers must be an integer, got True"),
    (dict(repeats=2), "--repeats needs --version rand"),
    (dict(repeats=2, version="rand", shard="0/2"), "--repeats cannot be combined with --shard"),
    (dict(extra_attacks=["malt", "MALT"]), "repeats an attack"),
    (dict(extra_attacks=["pgd"]), "unknown extra attack(s) pgd"),
    (dict(dataset="mnist"), "unknown dataset 'mnist'"),
    (dict(bogus=1), "unknown evaluation option(s) bogus"),
])
def test_each_bad_option_is_one_line_before_any_work(keywords, message):
    with pytest.raises(ConfigError) as caught:
        EvaluationOptions.from_keywords(**keywords)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_options_are_frozen_and_a_replaced_copy_is_checked_again():
    opts = EvaluationOptions(seed=3, extra_attacks="MALT")
    assert opts.extra_attacks == ("malt",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 4
    with pytest.raises(ConfigError, match="--seed must be at least 0"):
        opts.replace(seed=-2)
