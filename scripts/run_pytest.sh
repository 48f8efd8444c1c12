#!/usr/bin/env bash
# The Makefile's test targets: pytest with the 15 slowest tests listed, and a clear failure when nothing was
# selected (pytest's exit code 5): a run that checked nothing must not pass silently, in CI or at a desk.
set -uo pipefail
"${PYTEST:-pytest}" --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests (arguments: $*)" >&2
  echo "fix: check the -m/-k expression and paths in PYTEST_ARGS; 'pytest --collect-only -q ARGS' lists what they select" >&2
fi
exit "$rc"
