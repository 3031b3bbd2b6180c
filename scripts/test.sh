#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: provisions Node 24, Debian
# packages, Redis, dockerd and swarm (scripts/provision.sh), then typechecks, lints and
# runs every test tier against the real services. Extra arguments go to vitest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/provision.sh
. .tools/env
# The suite starts bin/deployer hundreds of times; Node's compile cache keeps each start
# from stripping and compiling the same TypeScript again (~0.25 s of CPU a start here).
export NODE_COMPILE_CACHE="$root/.tools/compile-cache"
echo "== typecheck"
npx tsc --noEmit -p .
echo "== lint"
npx oxlint --deny-warnings src test bench
echo "== tests"
report=.tools/vitest-report.json
rm -f "$report"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
if [ -f "$report" ]; then
  node -e '
    const r = require(process.argv[1]);
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
  ' "$root/$report"
fi
exit $status
