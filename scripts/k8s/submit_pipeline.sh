#!/usr/bin/env bash
# Runs the whole pipeline on Kubernetes: one Indexed Job per stage (stage-job.yaml),
# each starting once the Job before it has completed.
#
#   kubectl create configmap m6corpus-config --from-file=pipeline.toml   # [corpus] root = "/corpus"
#   # a ReadWriteMany PersistentVolumeClaim named m6corpus-data holding the inputs
#   IMAGE=registry.example.com/m6corpus:latest scripts/k8s/submit_pipeline.sh [pipeline.toml]
#
# Environment: STAGES (default: the stage sections of pipeline.toml, train excepted:
# it needs GPU nodes, see the README), TASKS_<STAGE> (indexes of a stage, e.g.
# TASKS_CRAWL=32), CPU and MEMORY per pod (default 8 and 16Gi), DRY_RUN=1 to print
# the manifests instead of applying them.
set -euo pipefail
CONFIG=${1:-pipeline.toml}
HERE=$(cd "$(dirname "$0")" && pwd)
: "${IMAGE:?set IMAGE to an image with m6corpus on its PATH}"
export IMAGE CPU=${CPU:-8} MEMORY=${MEMORY:-16Gi}
declare -A DEFAULT_TASKS=([ingest]=16 [crawl]=32 [extract]=64 [dedup]=32 [filter]=64 [tokenize]=64)
if [[ -z "${STAGES:-}" ]]; then
    STAGES=""
    for s in ingest crawl extract dedup filter tokenize; do
        grep -Eq "^\[\[?$s\]\]?[[:space:]]*(#.*)?$" "$CONFIG" && STAGES+="$s "
    done
fi
apply() { if [[ -n "${DRY_RUN:-}" ]]; then echo "---"; cat; else kubectl apply -f -; fi; }
apply < "$HERE/rbac.yaml"
AFTER=""
for stage in $STAGES; do
    var="TASKS_${stage^^}"
    export STAGE=$stage TASKS=${!var:-${DEFAULT_TASKS[$stage]}} AFTER
    envsubst '${STAGE} ${TASKS} ${AFTER} ${IMAGE} ${CPU} ${MEMORY}' < "$HERE/stage-job.yaml" | apply
    AFTER=m6-$stage
done
