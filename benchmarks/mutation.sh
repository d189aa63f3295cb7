#!/usr/bin/env bash
# Mutation testing of the core with mutmut (outside CI: it takes long; docs/mutation.md
# has the last result). Each group mutates one module and runs only that module's
# tests (mutmut then runs, per mutant, those of them that execute the mutated function).
#
#   pip install mutmut==3.8.1            # a tool for this check, not a dependency
#   benchmarks/mutation.sh [GROUP ...]   # default: every group; see GROUPS below
#
# Each group runs in a scratch copy of the working tree ($MUTATION_DIR/GROUP, default
# /tmp/tbptt-mutation), niced, one worker, each capped at $MUTATION_MINUTES minutes
# (default 15). Prints per group: mutants, killed, survived, other (timeout or
# not checked), kill rate; `cd $MUTATION_DIR/GROUP && mutmut show NAME` shows a mutant.
# MUTATION_SURVIVORS=1 reruns only the last run's survivors (and unchecked mutants)
# against the working tree's tests (after writing tests for them; the source must be
# unchanged, and the group's test selection is the one of the last full run).
set -euo pipefail

declare -A MODULE TESTS
MODULE[windows]=src/tbptt/engine/windows.py
TESTS[windows]="tests/engine/test_windows.py tests/engine/test_random_truncation.py"
MODULE[state]=src/tbptt/engine/state.py
TESTS[state]="tests/engine/test_state.py tests/engine/test_runner.py"
MODULE[recompute]=src/tbptt/engine/recompute.py
TESTS[recompute]="tests/engine/test_recompute.py"
MODULE[runner]=src/tbptt/engine/runner.py
TESTS[runner]="tests/engine/test_runner.py tests/engine/test_random_truncation.py tests/engine/test_recompute.py"
MODULE[memory]=src/tbptt/engine/memory.py
TESTS[memory]="tests/engine/test_recompute.py tests/diagnostics/test_diagnostics.py"
MODULE[recurrent]=src/tbptt/models/recurrent.py
TESTS[recurrent]="tests/models/test_models.py"
MODULE[segments]=src/tbptt/models/segments.py
TESTS[segments]="tests/models/test_models.py"
MODULE[streams]=src/tbptt/data/streams.py
TESTS[streams]="tests/data/test_streams.py"
MODULE[resumable]=src/tbptt/training/resumable.py
TESTS[resumable]="tests/training/test_trainer.py tests/training/test_divergence.py"
MODULE[bias]=src/tbptt/diagnostics/bias.py
TESTS[bias]="tests/diagnostics/test_diagnostics.py"
GROUPS_IN_ORDER="windows state recompute runner memory recurrent segments streams resumable bias"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_DIR:-/tmp/tbptt-mutation}
MINUTES=${MUTATION_MINUTES:-15}
unset PYTHONPATH  # mutmut puts the mutated copy first on the path itself
export OMP_NUM_THREADS=1

for group in ${@:-$GROUPS_IN_ORDER}; do
    module=${MODULE[$group]:?unknown group $group (one of: $GROUPS_IN_ORDER)}
    dir=$WORK/$group
    names=""
    if [[ ${MUTATION_SURVIVORS:-0} == 1 ]]; then
        names=$(grep -E ': (survived|no tests|not checked)$' "$dir/results.txt" | sed 's/: .*//')
        for copy in "$dir" "$dir/mutants"; do
            rm -rf "$copy/tests"
            (cd "$ROOT" && tar cf - --exclude=__pycache__ tests) | tar xf - -C "$copy"
        done
    else
        rm -rf "$dir" && mkdir -p "$dir"
        (cd "$ROOT" && tar cf - --exclude=__pycache__ src tests pyproject.toml) | tar xf - -C "$dir"
        selection=$(printf '"%s", ' ${TESTS[$group]})
        cat >> "$dir/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["src/"]
only_mutate = ["$module"]
pytest_add_cli_args_test_selection = [${selection%, }]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
TOML
    fi
    start=$SECONDS
    # shellcheck disable=SC2086  # $names: one mutant name per word
    (cd "$dir" && timeout "${MINUTES}m" nice -n 10 mutmut run --max-children 1 $names > run.log 2>&1) \
        || echo "$group: mutmut stopped (exit $?; see $dir/run.log)"
    (cd "$dir" && mutmut results --all true > results.txt 2>/dev/null) || true
    python - "$group" "$dir/results.txt" "$((SECONDS - start))" <<'PY'
import collections, sys
group, path, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
counts = collections.Counter(line.rsplit(": ", 1)[1].strip() for line in open(path) if ": " in line)
mutants, killed, survived = sum(counts.values()), counts["killed"], counts["survived"]
other = mutants - killed - survived
rate = f"{100 * killed / (killed + survived):.1f}%" if killed + survived else "-"
print(f"{group}: {mutants} mutants, {killed} killed, {survived} survived, {other} other "
      f"({dict(counts)}), kill rate {rate}, {seconds} s")
PY
done
