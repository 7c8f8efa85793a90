# Device call (issue 14): tune the fused-MoE kernel for the Qwen3-30B-A3B shape and profile
# a batch-1 decode step of that shape (kernel table), in one call (< 9 minutes).
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_moe1.sh
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
timeout 150 python3 benchmarks/gpu/profile_steps.py --model qwen3-30b-a3b --sizes 1024 \
    --decode-steps 64 --top 40 --out $OUT/profile_moe_before.json > $OUT/profile.log 2>&1
tail -3 $OUT/profile.log
timeout ${TUNE_S:-330} python3 benchmarks/kernels/tune_moe.py --budget-s ${BUDGET:-12} --small-budget-s ${SMALL_BUDGET:-60} \
    --buckets ${BUCKETS:-1,2,4,8,16,32,64,128,256,512,1024,2048,4096} --out $OUT > $OUT/tune.log 2>&1
tail -20 $OUT/tune.log
