#!/usr/bin/env bash
# End-to-end run on a local kind cluster: the operator installed by its Helm chart delivers
# examples/canary.yaml, then a new model version through the whole canary (weights, pauses,
# analysis on real Prometheus metrics) to Succeeded.
#
# Needs: docker, kind, kubectl, helm (v3 or v4), network access to the registries.
#   hack/kind-e2e.sh                     # create the cluster, run, delete the cluster
#   KEEP_CLUSTER=1 hack/kind-e2e.sh      # leave the cluster up to look around
#   RUN_PYTEST=1 hack/kind-e2e.sh        # also run tests/cluster against it
# Environment: CLUSTER (modelrollout-e2e), KIND_NODE_IMAGE, GATEWAY_API_VERSION (v1.2.1),
#   PROMETHEUS_STACK_VERSION (kube-prometheus-stack chart version; empty: latest), TIMEOUT (20m).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${CLUSTER:-modelrollout-e2e}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.2.1}
PROMETHEUS_STACK_VERSION=${PROMETHEUS_STACK_VERSION:-}
TIMEOUT=${TIMEOUT:-20m}
OPERATOR_IMAGE=ghcr.io/modelrollout/modelrollout-operator
OPERATOR_TAG=e2e
# The tag examples/canary.yaml names: a loaded image with a non-latest tag is used as is
# (imagePullPolicy IfNotPresent), so the example needs no edit.
MODEL_SERVER_IMAGE=ghcr.io/modelrollout/reference-model-server:0.1.0
OPERATOR_NAMESPACE=modelrollout-system
KUBECONFIG_FILE=${KUBECONFIG_FILE:-${TMPDIR:-/tmp}/kind-$CLUSTER.kubeconfig}
export KUBECONFIG=$KUBECONFIG_FILE

log() { printf '\n=== %s: %s\n' "$(date +%H:%M:%S)" "$*"; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 2; }
done

diagnose() {
  # Whatever failed, leave enough in the log to see why without the cluster.
  log "diagnostics"
  kubectl get modelrollouts -A -o yaml || true
  kubectl get deployments,pods,services -A -o wide || true
  kubectl -n "$OPERATOR_NAMESPACE" logs deployment/modelrollout-operator --tail=300 || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -60 || true
}

cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then diagnose; fi
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
    kind delete cluster --name "$CLUSTER" || true
    rm -f "$KUBECONFIG_FILE"
  else
    log "cluster $CLUSTER kept; KUBECONFIG=$KUBECONFIG_FILE"
  fi
  exit $status
}
trap cleanup EXIT

log "cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE"

log "Gateway API CRDs $GATEWAY_API_VERSION (standard channel)"
kubectl apply --server-side -f \
  "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"

log "Prometheus (kube-prometheus-stack, trimmed to the operator and one Prometheus)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm upgrade --install kps prometheus-community/kube-prometheus-stack \
  --namespace monitoring --create-namespace \
  ${PROMETHEUS_STACK_VERSION:+--version "$PROMETHEUS_STACK_VERSION"} \
  --set alertmanager.enabled=false \
  --set grafana.enabled=false \
  --set nodeExporter.enabled=false \
  --set kubeStateMetrics.enabled=false \
  --set prometheus.prometheusSpec.scrapeInterval=5s \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --wait --timeout 10m
# examples/canary.yaml reads http://prometheus-operated.monitoring:9090, the Service the
# Prometheus Operator creates for every Prometheus.
kubectl -n monitoring wait --for=condition=Ready pod -l app.kubernetes.io/name=prometheus --timeout=5m
kubectl apply -f "$ROOT/hack/kind/podmonitor.yaml"

log "images"
docker build --target operator -t "$OPERATOR_IMAGE:$OPERATOR_TAG" "$ROOT"
docker build --target model-server -t "$MODEL_SERVER_IMAGE" "$ROOT"
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE:$OPERATOR_TAG" "$MODEL_SERVER_IMAGE"

log "operator (Helm chart)"
# As docs/install.md tells users: CRDs first, server-side, then the chart.
kubectl apply --server-side -f "$ROOT/crds/"
helm upgrade --install modelrollout "$ROOT/charts/modelrollout-operator" \
  --namespace "$OPERATOR_NAMESPACE" --create-namespace \
  --set fullnameOverride=modelrollout-operator \
  --set image.tag="$OPERATOR_TAG" \
  --set image.pullPolicy=Never \
  --set logFormat=text \
  --set metrics.serviceMonitor.enabled=true \
  --set prometheusRule.enabled=true \
  --set dashboard.enabled=true \
  --wait --timeout 5m

log "first version of examples/canary.yaml"
kubectl apply -f "$ROOT/examples/canary.yaml"
kubectl -n default wait modelrollout/fraud-scorer --for=jsonpath='{.status.phase}'=Succeeded --timeout=5m
kubectl -n default get mro fraud-scorer

log "traffic"
kubectl apply -f "$ROOT/hack/kind/loadgen.yaml"

log "canary to 1.1.0"
kubectl -n default patch modelrollout fraud-scorer --type merge -p '{"spec":{"model":{"version":"1.1.0"}}}'
kubectl -n default wait modelrollout/fraud-scorer --for=jsonpath='{.status.candidateVersion}'=1.1.0 --timeout=2m
kubectl -n default wait modelrollout/fraud-scorer --for=jsonpath='{.status.stableVersion}'=1.1.0 --timeout="$TIMEOUT"
kubectl -n default wait modelrollout/fraud-scorer --for=jsonpath='{.status.phase}'=Succeeded --timeout=2m
kubectl -n default get mro fraud-scorer

if [[ "${RUN_PYTEST:-0}" == 1 ]]; then
  log "tests/cluster"
  MODELROLLOUT_CLUSTER_KUBECONFIG="$KUBECONFIG_FILE" python -m pytest -m cluster "$ROOT/tests/cluster" -v
fi

log "passed"
