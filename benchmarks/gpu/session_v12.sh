# Queued for the next device session (written in session 11, not yet run):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v12.sh a   # W6 at the running cap's host-bound floor (256, the
#                                                                # default since ce17aab) vs the 1,024 its pool allows,
#                                                                # alternated twice on one machine; the fp8 V^T-page probe
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v12.sh b   # W2 fp8 linear + fp8 KV at the head (the in-launch decode
#                                                                # merge at 859 rows; session 10: 10,637), W2 bf16 at
#                                                                # chunked prefill 8192 again (session 11: 9,397 vs 9,120)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v12.sh c   # W6 at chunked prefill 2048 vs 8192, alternated
#                                                                # (its 249 eager mixed steps were 4.6 s of 12.8);
#                                                                # then Nsight Compute on the decode kernel
#                                                                # (benchmarks/gpu/ncu_decode.sh), fp8 vs bf16 cache
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v12.sh d   # the decode kernel's load variants (unmasked head
#                                                                # dims, K by rows; decode_fp8_variants.py), then W2
#                                                                # fp8 + fp8 KV once, with the fastest variant's options
#                                                                # when it gains (else the head's defaults)
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?a|b}"
source benchmarks/gpu/session_setup.sh
case "$PART" in
a)
  for i in 1 2; do
    run bf16-cap256-$i W6
    run bf16-cap1024-$i W6 --engine-opt max_running_requests=1024
  done
  timeout 150 python3 benchmarks/kernels/decode_fp8_vt_probe.py --out $OUT/decode_fp8_vt.json > /tmp/vt.log 2>&1
  stamp "V^T probe:"; tail -1 /tmp/vt.log
  ;;
b)
  run fp8wkv-auto W2 $FP8 $KV8
  run bf16-chunk8192 W2 --engine-opt chunked_prefill_size=8192
  ;;
c)
  for i in 1 2; do
    run chunk2048-$i W6
    run chunk8192-$i W6 --engine-opt chunked_prefill_size=8192
  done
  NCU_SETUP_DONE=1 source benchmarks/gpu/ncu_decode.sh
  ;;
d)
  timeout 170 python3 benchmarks/kernels/decode_fp8_variants.py --out $OUT/decode_variants.json \
    --opts-out /tmp/fp8.opts > /tmp/variants.log 2>&1
  stamp "$(grep '^==' /tmp/variants.log)"
  OPTS=$(cat /tmp/fp8.opts 2>/dev/null)
  RUN_TIMEOUT=200
  # one W2 run (the device budget left): with the fastest variant's options, if any gained
  run fp8wkv-best W2 $FP8 $KV8 $OPTS
  ;;
esac
ls $OUT
