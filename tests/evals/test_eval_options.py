"""`kotae eval`'s options are `EvalConfig`'s fields: their help is each field's docstring, their default
the field's (--data, required of a run, is checked by the command, since `eval compare` shares the group)."""

from dataclasses import MISSING, fields

import typer
from typer.testing import CliRunner

from kotae.core.cli_options import field_help
from kotae.evals.commands import eval_app
from kotae.evals.config import EvalConfig


def test_every_field_is_an_option_with_its_docstring_and_default():
    params = {param.name: param for param in typer.main.get_command(eval_app).params}
    docs = field_help(EvalConfig)
    for field in fields(EvalConfig):
        option = params[field.name]
        assert option.help == docs[field.name], field.name
        assert option.default == (None if field.default is MISSING else field.default), field.name


def test_a_fields_bounds_are_the_options():
    refused = CliRunner().invoke(eval_app, ["--data", "qa.jsonl", "--limit", "0"])
    assert refused.exit_code == 2 and "--limit" in refused.output
