# Device call for the 2-GPU issue (19): tensor parallelism on 2 H200s, in one call (< 10 min).
#   run(kind="nvidia-h200-x2"): ANYWARE_COMMIT=<sha> bash benchmarks/gpu/tp2_run.sh
# 1. TP=2 vs TP=1 greedy parity (fp32 token-identical; bf16 share of identical tokens) for
#    Llama, Qwen2 (tied, 1 KV head), Qwen3 and Qwen3-MoE (TP and EP), CUDA graphs on.
# 2. W1 (decode bs=1) and W2S (64 x 512/256) on llama-3.1-8b (dummy weights) at --tp 2, and
#    W1 at --tp 1 beside it; results as JSON under $OUT.
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
export PYTHONPATH=$PWD
nvidia-smi topo -m > $OUT/topo.txt 2>&1
python3 benchmarks/plan_broadcast.py > $OUT/plan_broadcast.txt 2>&1; cat $OUT/plan_broadcast.txt
timeout 240 python3 benchmarks/gpu/tp2_parity.py --out $OUT > $OUT/parity.log 2>&1
grep -v "^INFO" $OUT/parity.log | tail -12
for spec in "W1 tp2 tensor_parallel_size=2" "W1 tp1 tensor_parallel_size=1" \
            "W2S tp2 tensor_parallel_size=2"; do
    set -- $spec
    timeout 100 python3 benchmarks/run.py $1 --out $OUT --tag $2 --engine-opt $3 \
        > $OUT/$1-$2.log 2>&1
    echo "$1 $2 rc=$?"; grep -E '"(tok_s|output_tok_s|ms_per_step|step_ms)"' $OUT/$1-$2.log | head -4
done
rm -rf $OUT/models
