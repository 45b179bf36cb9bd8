#!/usr/bin/env bash
# Run the reference load client (../shared/bench/load.py) against this service on the `fake` model.
# Usage: bench/run_load.sh [TASKS] [SUBSCRIBERS] [RUNS]   (defaults: 20 2 3)
# Starts the service on a free loopback port, runs the client RUNS times, prints one summary line per
# run and appends each full JSON report to docs/load-reports.jsonl. Exits non-zero if any run saw a
# correctness problem (gap, duplicate, foreign event, unended stream...).
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-20}
subscribers=${2:-2}
runs=${3:-3}
load_client=../shared/bench/load.py
source scripts/setup-env.sh requirements.txt
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LLM_PROVIDER=fake LOG_LEVEL=warning RATE_LIMIT=${RATE_LIMIT:-100000/minute} \
  MAX_STREAMS_PER_CLIENT=${MAX_STREAMS_PER_CLIENT:-100000} python -m uvicorn main:app --host 127.0.0.1 --port "$port" --no-access-log &
server=$!
report_file=$(mktemp)
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; rm -f "$report_file"' EXIT
python - "$port" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("service did not start")
PY
status=0
for _ in $(seq "$runs"); do
  python "$load_client" --base-url "http://127.0.0.1:$port" --tasks "$tasks" --subscribers "$subscribers" \
         --timeout 120 --server-pid "$server" > "$report_file" || status=1
  python bench/summarize_load.py < "$report_file"
done
exit "$status"
