#!/usr/bin/env bash
# Submits the whole pipeline to Slurm: one array job per stage, each starting only
# when every task of the stage before has succeeded (--dependency=afterok), so a
# stage never reads a half-written dataset.
#
#   scripts/slurm/submit_pipeline.sh [pipeline.toml]
#
# Environment (all optional):
#   STAGES         stages to submit, in order (default: "ingest crawl extract dedup filter
#                  tokenize train", minus those without a section in the config)
#   TASKS_<STAGE>  array size of a stage, e.g. TASKS_CRAWL=32 (defaults below); every
#                  index runs `m6corpus run STAGE --task-index I --task-count N`
#   AFTER          a job id the first stage waits for (to resume a chain past a failure)
#   SBATCH_ARGS    extra sbatch arguments for every data stage (partition, account, ...)
#   TRAIN_ARGS     sbatch arguments for the training job (default: one node, 8 GPUs)
#   M6CORPUS       path of the m6corpus binary on the compute nodes (default: m6corpus)
#
# Sizing: crawl tasks beyond [crawl] host_partitions (default 64) get no work; ingest
# has one task per input file. Dedup's processes wait for each other between its
# phases, so its whole array must be able to run at once (no `%` throttle; or submit
# its phases as separate chained arrays with `m6corpus dedup ... --phase`).
set -euo pipefail
CONFIG=$(realpath "${1:-pipeline.toml}")
HERE=$(cd "$(dirname "$0")" && pwd)
M6CORPUS=${M6CORPUS:-m6corpus}
mkdir -p logs

declare -A DEFAULT_TASKS=([ingest]=16 [crawl]=32 [extract]=64 [dedup]=32 [filter]=64 [tokenize]=64)
if [[ -z "${STAGES:-}" ]]; then
    STAGES=""
    for s in ingest crawl extract dedup filter tokenize train; do
        # A stage is submitted when pipeline.toml has a [s] or [[s]] section.
        grep -Eq "^\[\[?$s\]\]?[[:space:]]*(#.*)?$" "$CONFIG" && STAGES+="$s "
    done
fi

prev=${AFTER:-}
for stage in $STAGES; do
    dep=()
    [[ -n "$prev" ]] && dep=(--dependency="afterok:$prev")
    if [[ "$stage" == train ]]; then
        # Training is one job on GPU nodes, not an array: see the README's trainer section
        # for multi-node (torchrun/srun) settings.
        # shellcheck disable=SC2086
        prev=$(sbatch --parsable "${dep[@]}" --job-name=m6-train ${TRAIN_ARGS:---nodes=1 --gpus=8 --cpus-per-task=32 --mem=256G --time=7-00:00:00} \
            --output="logs/%x-%j.out" --wrap "exec '$M6CORPUS' run train --config '$CONFIG'")
    else
        var="TASKS_${stage^^}"
        n=${!var:-${DEFAULT_TASKS[$stage]}}
        # shellcheck disable=SC2086
        prev=$(sbatch --parsable "${dep[@]}" --job-name="m6-$stage" --array="0-$((n - 1))" ${SBATCH_ARGS:-} \
            --export="ALL,M6_STAGE=$stage,M6_TASKS=$n,M6_CONFIG=$CONFIG,M6CORPUS=$M6CORPUS" "$HERE/m6_stage.sbatch")
    fi
    prev=${prev%%;*} # --parsable prints "jobid[;cluster]"
    echo "$stage: job $prev${dep:+ (after ${dep[0]#--dependency=afterok:})}"
done
echo "follow with: squeue --me. If an index fails, the stages after it never start: rerun it"
echo "(it resumes), then resubmit the rest: AFTER=<rerun job id> STAGES='<later stages>' $0 $CONFIG"
