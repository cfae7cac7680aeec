#!/usr/bin/env bash
# scripts/gotest.sh PACKAGES...: go test -v over the packages, its whole
# output kept in $KHW_TEST_LOG (default .cache/test.log). On the terminal:
# each package's result, every skipped test with its reason, and the count
# of skipped tests ("skipped tests: 0" is what a green CI with CI=true
# shows: a test that needs root or a tool fails there instead of skipping);
# when something fails, the whole output. Exit status: go test's.
set -uo pipefail
log=${KHW_TEST_LOG:-.cache/test.log}
mkdir -p "$(dirname "$log")"
"${GO:-go}" test -count=1 -v "$@" >"$log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
  cat "$log"
  echo "go test failed (exit $rc); the output above is also in $log"
  exit "$rc"
fi
# A skip is "--- SKIP: TestName (0.00s)" and, on the next line, the reason.
awk '
  /^(ok|FAIL|\?) / { print; next }
  /^[[:space:]]*--- SKIP: / { skipped++; print; getline reason; print reason }
  END { printf "skipped tests: %d (the whole output: '"$log"')\n", skipped }
' "$log"
