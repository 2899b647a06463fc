#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs on a fresh Debian machine with no internet
# (only the Debian, npm and PyPI registries): Chromium, ripgrep and code-server (the real VS Code,
# served to a browser). playwright-core is this folder's npm dependency (run.sh installs it).
# Idempotent: a second run only checks and returns.
#
# code-server is cached under .cache/ (git-ignored). Its own postinstall downloads ripgrep from
# GitHub, so it is installed with --ignore-scripts and the postinstall is replayed here in an
# order that works offline (see /work/shared/EDITOR-TESTING.md).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.100.3}"  # the last release that runs on Node 20
CS_PREFIX="$HERE/.cache/code-server-$CODE_SERVER_VERSION"
CS_DONE="$CS_PREFIX/.installed"

log() { echo "[e2e install] $*" >&2; }

# Runs a step with its output in the install log, shown only when the step fails.
INSTALL_LOG="${TMPDIR:-/tmp}/santacoder-e2e-install.log"
quiet() {
  if ! "$@" >>"$INSTALL_LOG" 2>&1; then
    tail -n 60 "$INSTALL_LOG" >&2
    log "failed: $* (full log: $INSTALL_LOG)"
    return 1
  fi
}

# Native modules (argon2, node-pty) are compiled against the local Node headers: node-gyp
# cannot download them here.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

install_debian_packages() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v rg >/dev/null || missing+=(ripgrep)
  dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)  # code-server's kerberos module
  command -v g++ >/dev/null && command -v make >/dev/null || missing+=(g++ make)
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  log "apt-get install ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_code_server() {
  if [ -f "$CS_DONE" ]; then return; fi
  log "installing code-server $CODE_SERVER_VERSION into $CS_PREFIX (a few minutes)"
  rm -rf "$CS_PREFIX"
  mkdir -p "$CS_PREFIX"
  echo '{"name":"code-server-cache","private":true}' >"$CS_PREFIX/package.json"
  : >"$INSTALL_LOG"
  (cd "$CS_PREFIX" && quiet npm install --no-save --ignore-scripts --loglevel=error "code-server@$CODE_SERVER_VERSION")
  (cd "$CS_PREFIX" && quiet npm rebuild --loglevel=error argon2)

  local vscode="$CS_PREFIX/node_modules/code-server/lib/vscode"
  (cd "$vscode" && quiet npm install --omit=dev --ignore-scripts --loglevel=error)
  mkdir -p "$vscode/node_modules/@vscode/ripgrep/bin"
  ln -sf "$(command -v rg)" "$vscode/node_modules/@vscode/ripgrep/bin/rg"
  # node-pty's install script runs npx, which must not stop to ask.
  (cd "$vscode" && quiet env npm_config_yes=true npm rebuild --loglevel=error)
  ln -sfn node_modules "$vscode/node_modules.asar"
  (cd "$vscode/extensions" && quiet npm install --omit=dev --loglevel=error)
  touch "$CS_DONE"
}

install_debian_packages
install_code_server
log "ready: $CS_PREFIX/node_modules/.bin/code-server"
