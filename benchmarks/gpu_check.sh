#!/usr/bin/env bash
# One GPU session's checks, run on a lent CUDA machine (see benchmarks/README.md, "On a GPU").
# It expects: the repo as working directory, $OUT for results, .whl/ with the Jupyter stack's wheels
# that the GPU image lacks (papermill, ipykernel, igraph, ...), and .devdata/Cora/raw (the Planetoid
# files) as the data folder, plus .devdata/MSL.tgz (the MSL folder, unpacked there). Steps (arguments,
# default all): tests (every cuda-marked test), nb02 and nb01 (the notebooks' full profiles on cuda),
# mtad (the MTAD-GAT cuda tests and benchmark) and nb05 (notebook 05 on MSL, NB05_ARGS extra -p options).
set -uo pipefail
steps="${*:-tests nb02 nb01 mtad nb05}"
want() { [[ " $steps " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 3; }
export PYTHONPATH="/tmp/site:$PWD"
export TGAD_DATA_DIR="$PWD/.devdata"
[ -f .devdata/MSL.tgz ] && [ ! -d .devdata/MSL ] && tar xzf .devdata/MSL.tgz -C .devdata
unset TGAD_DATA_MIRROR
python3 -m ipykernel install --prefix /tmp/jk --name tgad-lite --display-name "Python (tgad-lite)" >/dev/null
export JUPYTER_PATH=/tmp/jk/share/jupyter
{
  nvidia-smi -L
  python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'pyg', g.__version__)"
} 2>&1 | tee "$OUT/device.txt"
want tests && { echo "== cuda tests"
python3 -m pytest -p no:cacheprovider -m cuda tests -q -rs 2>&1 | tail -30 | tee "$OUT/cuda_tests.txt"; }
want nb02 && { echo "== notebook 02, full profile, device=cuda"
timeout 330 python3 -m tgad_lite.notebooks run --profile full --only 02 -p device='"cuda"' \
  --runs-dir /tmp/runs02 2>&1 | tail -25 | tee "$OUT/nb02.txt"; }
want nb01 && { echo "== notebook 01, ${NB01_PROFILE:-full} profile, device=cuda"
timeout "${NB01_TIMEOUT:-170}" python3 -m tgad_lite.notebooks run --profile "${NB01_PROFILE:-full}" --only 01 -p device='"cuda"' \
  --runs-dir /tmp/runs01 2>&1 | tail -25 | tee "$OUT/nb01.txt"; }
want mtad && { echo "== MTAD-GAT cuda tests and benchmark"
python3 -m pytest -p no:cacheprovider -m cuda tests/test_mtad_model.py tests/test_mtad_estimator.py tests/test_mtad_gru.py \
  -q -rs 2>&1 | tail -8 | tee "$OUT/mtad_cuda_tests.txt"
timeout "${BENCH_TIMEOUT:-120}" python3 benchmarks/mtad_gat.py --device cuda --only msl,150 --json "$OUT/mtad_bench_cuda.json" \
  2>&1 | tail -20 | tee "$OUT/mtad_bench_cuda.txt"; }
want nb05 && { echo "== notebook 05, full profile, device=cuda ${NB05_ARGS:-}"
# shellcheck disable=SC2086
timeout "${NB05_TIMEOUT:-330}" python3 -m tgad_lite.notebooks run --profile full --only 05 -p device='"cuda"' ${NB05_ARGS:-} \
  --runs-dir /tmp/runs05 2>&1 | tail -25 | tee "$OUT/nb05.txt"; }
for nb in 01 02 05; do
  [ -d /tmp/runs$nb ] || continue
  m=$(find /tmp/runs$nb -name metrics.json | head -1); [ -n "$m" ] && cp "$m" "$OUT/nb${nb}_metrics.json"
  e=$(find /tmp/runs$nb -name "${nb}_*.ipynb" | head -1); [ -n "$e" ] && cp "$e" "$OUT/nb${nb}_executed.ipynb"
done
ls -l "$OUT"
