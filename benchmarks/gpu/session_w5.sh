# GPU run W5 (issue 14), one mode per command (each < 8 minutes on an H200):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_w5.sh            # W5: kernel micro-benchmark
#       (checked against the torch reference at each size), the engine on the qwen3-30b-a3b
#       shape (bf16 dummy weights, CUDA graphs + overlap), transformers beside it
#   ANYWARE_COMMIT=<sha> MODE=validate bash benchmarks/gpu/session_w5.sh   # the MoE kernel
#       tests and the conformance moe + engine tiers on the cuda platform
#   ANYWARE_COMMIT=<sha> MODE=tune bash benchmarks/gpu/session_w5.sh       # tune the kernel's
#       block sizes for this GPU (install the JSON as its report's "install_as" names)
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
case "${MODE:-w5}" in
  validate)
    timeout 200 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_moe.py > $OUT/kernel_tests.log 2>&1; tail -5 $OUT/kernel_tests.log
    timeout 260 anyware conformance --platform cuda --tiers moe,engine --report $OUT/conf > $OUT/conf.log 2>&1; tail -5 $OUT/conf.log ;;
  tune)
    timeout 540 python3 benchmarks/kernels/tune_moe.py --budget-s 25 --out $OUT > $OUT/tune.log 2>&1; tail -25 $OUT/tune.log ;;
  *)
    timeout 470 python3 benchmarks/gpu/w5_moe.py --peer --out $OUT > $OUT/w5.log 2>&1; tail -40 $OUT/w5.log ;;
esac
