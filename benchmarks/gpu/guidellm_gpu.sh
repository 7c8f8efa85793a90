# Issue 20: a third-party load generator (GuideLLM 0.8.1) against `anyware serve` at full
# scale on the GPU: the W6 shape (qwen2.5-0.5b, dummy weights, 1000 x 512/256, all at once),
# then Poisson arrivals at 70% of the measured request rate.
#
# The device image already has pyarrow and pandas (KINDS.md's package list), so one call does:
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/guidellm_gpu.sh run   # carry .whl and .whl-gdl
#   bash benchmarks/gpu/guidellm_gpu.sh probe    # what the image has, if that list is stale
#   bash benchmarks/gpu/guidellm_gpu.sh pyarrow  # carry .whl-pyarrow (53 MB): only if the image lost it
# Wheels (cp312, made with pip download --only-binary=:all: --python-version 3.12 guidellm==0.8.1,
# minus what the image has: torch, transformers and their dependencies): .whl-gdl, .whl-pyarrow.
# Local check (CPU, small): GDL_INSTALL=0 N=8 PROMPT=32 OUTPUT=8 MODEL=anyware-demo bash benchmarks/gpu/guidellm_gpu.sh run
set -u
PART="${1:?probe|pyarrow|run}"
OUT="${OUT:-/tmp/guidellm-out}"; mkdir -p "$OUT"
T_SAT="${GDL_TIMEOUT_SAT:-400}"; T_POI="${GDL_TIMEOUT_POISSON:-300}"
case "$PART" in
probe)
  python3 -V
  for m in pyarrow pandas datasets aiohttp httpx rich click faker sanic loguru; do
    python3 -c "import $m; print('$m', getattr($m, '__version__', '?'))" 2>/dev/null || echo "$m missing"
  done
  exit 0 ;;
pyarrow)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl-pyarrow/*.whl && echo "pyarrow in /tmp/site"
  exit 0 ;;
esac
if [ -d .whl ] && [ "${GDL_INSTALL:-1}" = 1 ]; then  # GDL_INSTALL=0: use the environment as it is
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl .whl-gdl/*.whl > $OUT/wheels.log 2>&1 || { tail -5 $OUT/wheels.log; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
[ -f benchmarks/gpu/setup.sh ] && command -v nvidia-smi > /dev/null && { source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; export PYTHONPATH=/tmp/site:$PWD; }
MODEL="${MODEL:-qwen2.5-0.5b}"; N="${N:-1000}"; PROMPT="${PROMPT:-512}"; OUTPUT="${OUTPUT:-256}"
PORT="${PORT:-30123}"; TOK=/tmp/wordtok
SERVE=(--model "$MODEL")
if [ "$MODEL" != anyware-demo ]; then
  VOCAB=$(python3 -c "from anyware.model.config import PRESETS; print(PRESETS['$MODEL'].vocab_size)")
  python3 benchmarks/gpu/wordlevel_tokenizer.py --vocab "$VOCAB" --out $TOK > /dev/null
  SERVE+=(--load-format dummy --tokenizer $TOK)
else
  TOK=$(python3 -c "from anyware.engine.config import demo_model_path; print(demo_model_path())")
fi
anyware serve "${SERVE[@]}" --port $PORT --context-len 4096 --disable-log-requests > $OUT/server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for i in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/health > /dev/null && break; sleep 1; done
NAME=$(curl -s http://127.0.0.1:$PORT/v1/models | python3 -c "import json,sys; print(json.load(sys.stdin)['data'][0]['id'])")
scenario() {  # scenario PROFILE_JSON COUNT FILE
  python3 - "$1" "$2" "$3" <<PY
import json, sys
profile, count, path = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
json.dump({"spec": {
    "backend": {"kind": "openai_http", "target": "http://127.0.0.1:$PORT", "model": "$NAME",
                "request_format": "/v1/completions"},
    "profile": profile, "tokenizer": {"kind": "hf_auto", "model": "$TOK"},
    "data": [{"kind": "synthetic_text", "prompt_tokens": $PROMPT, "output_tokens": $OUTPUT}],
    "constraints": [{"kind": "max_requests", "count": count}]}}, open(path, "w"))
PY
}
summary() {
  python3 - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["benchmarks"][0]["metrics"]
s = lambda k: m[k]["successful"]
print(sys.argv[1].split("/")[-1], "requests", m["request_totals"],
      "| req/s %.2f | out tok/s %.0f | TTFT p50/p99 %.1f/%.1f ms | ITL p50 %.2f ms" % (
      s("requests_per_second")["mean"], s("output_tokens_per_second")["mean"],
      s("time_to_first_token_ms")["median"], s("time_to_first_token_ms")["percentiles"]["p99"],
      s("inter_token_latency_ms")["median"]))
PY
}
GDL=$(command -v guidellm || echo "python3 -m guidellm")
scenario '{"kind": "concurrent", "streams": '"$N"'}' "$N" $OUT/sat.json
HF_HUB_OFFLINE=1 timeout $T_SAT $GDL run --scenario $OUT/sat.json --output "kind=json,path=$OUT/guidellm-saturation.json" --disable-progress > $OUT/guidellm-sat.log 2>&1 || tail -20 $OUT/guidellm-sat.log
summary $OUT/guidellm-saturation.json
RATE=$(python3 -c "import json; m=json.load(open('$OUT/guidellm-saturation.json'))['benchmarks'][0]['metrics']; print(round(0.7*m['requests_per_second']['successful']['mean'], 3))")
scenario '{"kind": "poisson", "rate": '"$RATE"'}' $(( N < 300 ? N : 300 )) $OUT/poisson.json
HF_HUB_OFFLINE=1 timeout $T_POI $GDL run --scenario $OUT/poisson.json --output "kind=json,path=$OUT/guidellm-poisson70.json" --disable-progress > $OUT/guidellm-poisson.log 2>&1 || tail -20 $OUT/guidellm-poisson.log
summary $OUT/guidellm-poisson70.json
