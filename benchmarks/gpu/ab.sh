# Same-run A/B on the GPU: the previous main (a tree unpacked at .ab/old, carried) against this
# tree, each installed into its own --target directory and run with its own benchmarks/run.py.
#   ANYWARE_COMMIT=<this commit> ANYWARE_BASE_COMMIT=<old> bash benchmarks/gpu/ab.sh W1 W6 ...
# Each workload runs old, new, old, new ... (AB_REPEAT times, default 1); results under $OUT.
set -u
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT}" PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for side in old new; do
  src=$PWD; [ $side = old ] && src=$PWD/.ab/old
  python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/ab-$side "$src" \
    > $OUT/install-$side.log 2>&1 || { echo "install $side failed"; tail -5 $OUT/install-$side.log; }
done
for w in "$@"; do
  for i in $(seq 1 "${AB_REPEAT:-1}"); do
    for side in old new; do
      src=$PWD; commit=$ANYWARE_COMMIT
      [ $side = old ] && src=$PWD/.ab/old && commit=${ANYWARE_BASE_COMMIT:-old}
      ( cd /tmp && ANYWARE_COMMIT=$commit PYTHONPATH=/tmp/ab-$side timeout 400 \
          python3 $src/benchmarks/run.py $w --out $OUT --tag $side$i ) > $OUT/$w-$side$i.log 2>&1
      python3 "$PWD/benchmarks/gpu/result_line.py" "$OUT/$w-$side$i.json"
    done
  done
done
