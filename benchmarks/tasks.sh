#!/usr/bin/env bash
# Issue 5's per-task table: for each task, the train command (teacher + MS-BERT
# heads + dev sweep), then MS-BERT against the KL baseline on that teacher
# (and, for TREC-50, the top-K rule at a few K against plain entropy).
#
#   bash benchmarks/tasks.sh RUNS_DIR [task ...]   (default: every task below)
#
# Each step is resumable: re-running the same command skips finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
# compare.py runs as a script: this checkout's package, installed or not.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
runs=${1:?usage: bash benchmarks/tasks.sh RUNS_DIR [task ...]}
shift
tasks=("${@:-trec6 trec50 mrpc rte cola stsb}")
for task in ${tasks[@]}; do
  case $task in
    trec*) data=../shared/data/trec ;;
    *) data=../shared/data/glue ;;
  esac
  variants="ms-bert attention sinkhorn,fastbert kl attention"
  top_k=""
  [[ $task == trec50 ]] && top_k="2,3,5"
  echo "=== $task $(date -u +%FT%TZ)"
  /usr/bin/time -f "$task train: %e s wall, %M KB peak RSS" \
    python -m msbert_tf.train --config="configs/$task.json" --data_dir="$data" \
      --output_dir="$runs/$task" --timing_examples=0
  /usr/bin/time -f "$task compare: %e s wall" \
    python benchmarks/compare.py --teacher_run="$runs/$task" --output_dir="$runs/${task}_compare" \
      --variants="$variants" --static_layers= --top_k="$top_k"
done
