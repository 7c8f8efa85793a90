# Nsight Compute on the paged decode attention kernel: the fp8 cache at W2's fp8 steady state
# (1024 rows x 1048 tokens: 54% of bandwidth, sessions 10-12) against the bf16 cache at 256
# rows (88-96%), in the same configuration (the defaults: block 64, 4 warps, 2 stages, one
# split), to see what limits the fp8 pass (memory throughput, stall reasons, occupancy,
# shared-memory traffic).
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/ncu_decode.sh
[ -n "${NCU_SETUP_DONE:-}" ] || source benchmarks/gpu/session_setup.sh
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$NCU" ]; then stamp "no ncu on this machine"; ls /usr/local/cuda*/bin 2>/dev/null | tr '\n' ' '
else
stamp "ncu: $NCU"
for kv in fp8 bf16; do
  b=1024; [ $kv = bf16 ] && b=256
  timeout 240 $NCU --kernel-name regex:_decode_split_kernel --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section InstructionStats --section SourceCounters \
    python3 benchmarks/kernels/decode_sweep.py --kv-dtype $kv --batch $b --block-n 64 --num-warps 4 \
      --num-stages 2 --splits 1 --warmup 1 --reps 1 --heads-first-top 0 --out /tmp/ds-$kv.json \
    > $OUT/ncu-decode-$kv.txt 2>&1
  stamp "$kv: $(grep -E 'Memory Throughput|DRAM Throughput|Duration' $OUT/ncu-decode-$kv.txt | head -3 | tr -s ' ' | tr '\n' ';')"
done
fi
ls $OUT
