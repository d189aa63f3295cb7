"""The tbptt command starts, tells its version and teaches with --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tbptt
from tbptt.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tbptt {tbptt.__version__}"


def test_help_explains_the_truncation(capsys):
    assert main([]) == 0
    assert "TBPTT(k1, k2)" in capsys.readouterr().out


def test_unknown_option_exits_with_code_2_and_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "tbptt", "--frobnicate"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unrecognized arguments: --frobnicate" in done.stderr
    assert "Traceback" not in done.stderr
