"""What the command-line tests share: running ``tbptt`` in-process and asserting that a
bad input is refused in one line and changes nothing."""

from __future__ import annotations

from pathlib import Path

from tbptt.cli.main import main


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` and the bytes of every file."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``tbptt argv`` in-process: its exit code and stderr."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def assert_refused(argv: list[str], fragments: tuple[str, ...], root: Path, capsys) -> str:
    """``argv`` exits with 2 and one line holding every fragment, and changes nothing."""
    before = snapshot(root)
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tbptt"), err
    assert "error: " in lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    after = snapshot(root)
    assert after.keys() == before.keys(), "files appeared or vanished"
    changed = [path for path in before if before[path] != after[path]]
    assert changed == [], "files changed"
    assert not (root / "pwned").exists()
    return lines[0]
