#!/usr/bin/env bash
# Builds, unit-tests and packages the VS Code extension, then runs the end-to-end test in the
# real VS Code (code-server + Chromium). Called by .ci/run; safe to run again (installs are cached).
#
#   tests/e2e/vscode/run.sh             unit tests, package, end-to-end test
#   tests/e2e/vscode/run.sh --unit      unit tests only (no code-server, no Chromium)
#
# Environment: SANTACODER_PYTHON (the interpreter whose lsp_server is tested; default python3),
# SANTACODER_E2E_MODEL (a model for the test instead of the bundled tiny one).
# Artefacts (screenshots, logs, the saved file): tests/e2e/vscode/artifacts/.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
EXTENSION="$REPO/vscode-extension"
VSIX="$EXTENSION/out/santacoder-lsp.vsix"

log() { echo "[vscode e2e] $*" >&2; }
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# npm ci only when package-lock.json changed since the last install in that folder.
npm_ci_cached() {
  local dir="$1" stamp="$1/node_modules/.lock-sha256" sum
  sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return; fi
  log "npm ci in ${dir#"$REPO"/}"
  (cd "$dir" && npm ci --loglevel=error)
  echo "$sum" >"$stamp"
}

npm_ci_cached "$EXTENSION"
log "unit tests"
(cd "$EXTENSION" && npm test --silent)
if [ "${1:-}" = "--unit" ]; then exit 0; fi

"$HERE/install.sh"
npm_ci_cached "$HERE"
log "packaging the extension"
(cd "$EXTENSION" && npm run --silent package >/dev/null)
log "end-to-end test"
node "$HERE/ghost_text.e2e.mjs" --vsix "$VSIX" --artifacts "$HERE/artifacts"
