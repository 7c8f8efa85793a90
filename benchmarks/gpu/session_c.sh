# H100 run C: parity diagnostic, W6, W1, W4 (32 groups), conformance on CUDA, W2 (1000 x 1024/1024).
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 75 python3 benchmarks/gpu/parity_diag.py 2>&1 | grep -v -e Writing -e "Loading weights" | tee $OUT/parity_diag.log
timeout 60 python3 $R W6 --out $OUT 2>&1 | grep -E "output_tok_s|busy|itl_ms_median"
timeout 60 python3 $R W1 --out $OUT 2>&1 | grep -E '"ms_per_step"|"tok_s"'
timeout 150 python3 $R W4 --w4-groups 32 --out $OUT 2>&1 | grep -E "output_tok_s|speedup|cached_tokens"
timeout 80 anyware conformance --platform cuda --report $OUT/conf -n 4 2>&1 | grep -E "verdict|FAILED"
timeout 200 python3 $R W2 --out $OUT 2>&1 | grep -E "output_tok_s|busy|itl_ms_median|wall_s"
