# GPU check of verify / draft-decode graphs (issue 13, item 3), one call, < 5 minutes on an H200:
#   1. the Triton attention backend tests (padded-verify plan: ragged rows replayed through a
#      graph planned from k alone), the CUDA platform and toolkit graph tests, on the GPU;
#   2. the conformance graphs tier on the cuda platform (graphs.padded_verify: verifies of k
#      and fewer drafts, MIXED verify+decode steps, 2-token catch-ups, in fp32/bf16/fp16);
#      and the attention tier's verify cases (chain and, new on Triton, tree masks);
#   3. greedy parity, tiny fp32 Llama, CUDA graphs on: n-gram and draft-model speculation vs
#      no speculation, token for token, with the strategies' replay/eager counters.
# Run: ANYWARE_COMMIT=<sha> bash benchmarks/gpu/verify_graphs_check.sh   (writes $OUT)
# Optional: BENCH=1 also runs spec_bench.py (8B shape, ~6 more minutes: a second call is safer).
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_attention_backend.py tests/kernels/test_cuda_platform.py tests/unit/test_torchdev.py > $OUT/kernels.log 2>&1; tail -3 $OUT/kernels.log
timeout 120 anyware conformance --platform cuda --tiers graphs --report $OUT/conf-graphs > $OUT/conf-graphs.log 2>&1; tail -4 $OUT/conf-graphs.log
timeout 60 anyware conformance --platform cuda --tiers attention --report $OUT/conf-attn -- -k "verify" > $OUT/conf-attn.log 2>&1; tail -4 $OUT/conf-attn.log
rm -f $OUT/conf-graphs/*.xml $OUT/conf-attn/*.xml
timeout 120 python3 benchmarks/gpu/verify_parity.py --out $OUT > $OUT/verify_parity.log 2>&1; tail -6 $OUT/verify_parity.log
if [ -n "$BENCH" ]; then
  timeout 400 python3 benchmarks/gpu/spec_bench.py --out $OUT > $OUT/spec_bench.log 2>&1; tail -12 $OUT/spec_bench.log
fi
ls $OUT
