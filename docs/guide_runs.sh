#!/usr/bin/env bash
# Every number and figure of docs/guide.md, regenerated: each command writes results.json, history.csv,
# report.md and the figures to runs/guide/NAME. Run from the repository root after `make test` built .venv
# (about 25 minutes on 2 CPU cores). Usage: bash docs/guide_runs.sh [NAME ...]   (default: all)
set -euo pipefail
J=${JAXREG:-.venv/bin/jaxreg}
OUT=${OUT:-runs/guide}
run() {
  local name=$1 start=$SECONDS; shift
  echo "== $name: jaxreg $*" >&2
  "$J" "$@" --quiet --out "$OUT/$name"
  echo "$name $((SECONDS - start)) s" >&2
}
declare -A STEPS=(
  [compare]="compare"
  [compare_clean]="compare --label-noise 0"
  [compare_in_step]="compare --epochs 20 --techniques none,mixup,cutmix,label_smoothing,confidence,dropout+rdrop,ema,swa,sam,batchnorm+swa"
  [compare_cnn]="compare --model cnn --epochs 20 --techniques none,drop_block,random_erasing,rand_augment,trivial_augment,augmix"
  [penalties]="experiment penalties"
  [bias_variance]="experiment bias_variance"
  [early_stopping]="experiment early_stopping"
  [cnn]="experiment cnn"
  [regression]="experiment regression"
  [dropout_mlp]="experiment dropout_mlp"
  [kfold]="experiment kfold"
  [transformer_seed0]="experiment transformer --seed 0"
  [transformer_seed1]="experiment transformer --seed 1"
  [transformer_seed2]="experiment transformer --seed 2"
  [augmentation_seed0]="experiment augmentation --seed 0"
  [augmentation_seed1]="experiment augmentation --seed 1"
  [augmentation_seed2]="experiment augmentation --seed 2"
  [kmeans]="experiment kmeans"
)
ORDER="compare compare_clean compare_in_step compare_cnn penalties bias_variance early_stopping cnn regression
dropout_mlp kfold transformer_seed0 transformer_seed1 transformer_seed2 augmentation_seed0 augmentation_seed1
augmentation_seed2 kmeans"
for name in ${@:-$ORDER}; do
  # shellcheck disable=SC2086
  run "$name" ${STEPS[$name]}
done
