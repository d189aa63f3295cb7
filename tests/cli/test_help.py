"""``tbptt --help`` and every ``tbptt SUBCOMMAND --help`` answer without importing
torch; a misspelt option gets the nearest one suggested."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tbptt.cli.main import main

SUBCOMMANDS = ("train", "eval", "generate", "demo", "advise")

HELP = [[], ["--help"], *([name, "--help"] for name in SUBCOMMANDS)]

NO_TORCH = """
import contextlib, io, sys
from tbptt.cli.main import main
for arguments in {HELP!r}:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main(arguments)
        except SystemExit:
            pass
    assert "usage: tbptt" in out.getvalue(), (arguments, out.getvalue())
print("torch" in sys.modules)
"""


def test_help_does_not_import_torch():
    code = NO_TORCH.format(HELP=HELP)  # one process for all: each start takes a while
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_import_tbptt_does_not_import_torch_until_a_name_is_used():
    code = "import sys, tbptt; print('torch' in sys.modules); tbptt.Runner; print(*sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    before, after = done.stdout.splitlines()
    assert before == "False" and "torch" in after.split(), done.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--lrr", "3"], "unrecognized arguments: --lrr 3 (did you mean --lr?)"),
        (["eval", "x", "--jsn"], "unrecognized arguments: --jsn (did you mean --json?)"),
        (["demo", "--dealy", "3"], "unrecognized arguments: --dealy 3 (did you mean --delay?)"),
    ],
)
def test_a_misspelt_option_gets_the_nearest_suggested(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_an_option_like_no_other_gets_no_suggestion(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--frobnicate"])
    assert "did you mean" not in capsys.readouterr().err
