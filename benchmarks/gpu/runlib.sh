# Shared helpers of the device session scripts (sourced after setup.sh):
#   stamp MSG                       a line prefixed with the seconds since this file was sourced
#   run TAG WORKLOAD [options...]   benchmarks/run.py WORKLOAD into $OUT/WORKLOAD-TAG.json, its log in
#                                   $RUN_LOGS (default $OUT; /tmp keeps a call's returned files few),
#                                   then the result's one-line summary
# FP8 / KV8: the engine options of fp8 linear layers / an fp8 KV cache.
T0=$SECONDS
RUN_LOGS="${RUN_LOGS:-$OUT}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
FP8="--engine-opt quantization=fp8"
KV8="--engine-opt kv_cache_dtype=fp8"
stamp() { echo "[$(( SECONDS - T0 )) s] $*"; }
run() {
  local tag=$1 w=$2; shift 2
  timeout "$RUN_TIMEOUT" python3 benchmarks/run.py "$w" --out $OUT --tag "$tag" "$@" > "$RUN_LOGS/$w-$tag.log" 2>&1
  stamp "$(python3 benchmarks/gpu/result_line.py "$OUT/$w-$tag.json")"
  tail -3 "$RUN_LOGS/$w-$tag.log" | grep -i "error" || true
}
