#!/usr/bin/env bash
# Run the browser tests N times in a row and report each run's time and the pass/fail count,
# for the flakiness check of the JupyterLab-in-Chromium tests (issue 6: 20 runs, no failure).
#
#   scripts/flaky_check.sh N [pytest args...]
#
# Default pytest args: tests/browser/test_jupyterlab_widgets.py. Python: $PYTHON, else
# .venv/bin/python, else /work/venv/bin/python, else python3. Each run's pytest output and
# artifacts go to test-artifacts/browser/flaky/run-<i>/; those of passing runs are deleted.
# Exit status: 0 only if every run passed.
set -uo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N [pytest args...]   (N: number of runs, a positive integer)" >&2
    exit 2
fi
runs=$1
shift
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
    set -- tests/browser/test_jupyterlab_widgets.py
fi
python=${PYTHON:-}
for candidate in .venv/bin/python /work/venv/bin/python python3; do
    [[ -n "$python" ]] && break
    command -v "$candidate" >/dev/null 2>&1 && python=$candidate
done

out_root=test-artifacts/browser/flaky
rm -rf "$out_root"
mkdir -p "$out_root"
passed=0
failed=0
times=()
echo "flaky check: $runs runs of: $python -m pytest $*"
printf '%4s  %-6s  %8s\n' run result seconds
for ((i = 1; i <= runs; i++)); do
    run_dir=$out_root/run-$i
    mkdir -p "$run_dir"
    start=$EPOCHREALTIME
    MVC_BROWSER_ARTIFACTS=$run_dir "$python" -m pytest -q -p no:cacheprovider "$@" >"$run_dir/pytest.log" 2>&1
    status=$?
    seconds=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    times+=("$seconds")
    if [[ $status -eq 0 ]]; then
        result=pass
        passed=$((passed + 1))
        rm -rf "$run_dir"
    else
        result=FAIL
        failed=$((failed + 1))
    fi
    printf '%4d  %-6s  %8.1f\n' "$i" "$result" "$seconds"
done

printf '%s\n' "${times[@]}" | sort -n | awk -v p="$passed" -v f="$failed" '
    { t[NR] = $1; sum += $1 }
    END { printf "passed %d, failed %d of %d runs; seconds per run: min %.1f, median %.1f, max %.1f, mean %.1f\n",
                 p, f, NR, t[1], t[int((NR + 1) / 2)], t[NR], sum / NR }'
if [[ $failed -gt 0 ]]; then
    echo "logs and screenshots of failed runs: $out_root/run-*/"
    exit 1
fi
