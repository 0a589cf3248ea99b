# shellcheck shell=bash disable=SC2034,SC2154  # sourced by scripts/cluster/record-scenario, which reads the
# variables and sets $out (the output folder) for scenario_readme
# warning-burst: Pods no node can fit (the scheduler's FailedScheduling Warnings repeat when it retries them) and
# Pods a quota forbids (the ReplicaSet controller's FailedCreate Warning counts up). Beside them, Pods that schedule.
SCENARIO_SUMMARY="Bursts of Warning Events: Deployment \`greedy\` (3 replicas) asks 64 CPUs per Pod, more than any node has (32), so kube-scheduler reports \`FailedScheduling\` on each of its Pods, again when it retries them (short-lived Pods \`batch-N\` free CPU every 8 s for about 60 s); Deployment \`unbounded\` asks no resources, which ResourceQuota \`no-best-effort\` forbids, so its ReplicaSet's \`FailedCreate\` Event counts up as the controller retries. Healthy look-alikes: Pod \`normal\` and the \`batch-N\` Pods (100m CPU), scheduled and Running at once."
SCENARIO_RESOURCES="deployments replicasets pods events"
SCENARIO_WATCHES="deployments replicasets pods"

scenario_setup() {
  step "ResourceQuota no-best-effort: no BestEffort Pods (Pods that request no resources) in default"
  kc create quota no-best-effort --hard=pods=0 --scopes=BestEffort >/dev/null
}

# small_pod NAME: creates Pod NAME asking 100m CPU.
small_pod() {
  kc create -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app: $1}
spec:
  containers:
  - name: app
    image: busybox:1.36
    resources:
      requests: {cpu: 100m}
YAML
}

scenario_run() {
  local round
  step "create Pod normal (100m CPU): scheduled and Running"
  small_pod normal
  sleep 2
  step "create Deployment greedy: 3 replicas asking 64 CPUs each (the nodes have 32): FailedScheduling"
  kc create -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: greedy
spec:
  replicas: 3
  selector:
    matchLabels: {app: greedy}
  template:
    metadata:
      labels: {app: greedy}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        resources:
          requests: {cpu: "64"}
YAML
  step "create Deployment unbounded: 1 replica asking no resources (BestEffort, forbidden by the quota): FailedCreate"
  kc create deployment unbounded --image=busybox:1.36 --replicas=1 >/dev/null
  for round in 1 2 3 4 5 6 7; do
    sleep 4
    step "batch-$round (100m CPU) runs for 4 s and is deleted: the freed CPU makes the scheduler retry greedy's Pods"
    small_pod "batch-$round"
    sleep 4
    kc delete pod "batch-$round" --wait=false >/dev/null
  done
  sleep 5
}

# warning_summary: one line per Warning Event of events.watch.yaml: its object, reason and highest count seen.
warning_summary() {
  grep -v '^#\|^---' "$out/events.watch.yaml" | jq -rs '
    [.[] | .object | select(.type == "Warning")]
    | group_by(.metadata.name)
    | map({object: "\(.[0].involvedObject.kind)/\(.[0].involvedObject.name)", reason: .[0].reason,
        count: (map(.count // .series.count // 1) | max), first: .[0].metadata.creationTimestamp})
    | sort_by(.first)
    | .[] | "- `\(.object)` \(.reason), count \(.count)"'
}

scenario_readme() {
  cat <<MD
## The pattern

\`deployments/default/greedy\` (3 replicas, each Pod requesting \`cpu: 64\`) gets a ReplicaSet and three Pods that no
node fits (\`kwok-node-0\` and \`kwok-node-1\` have 32 CPUs each). kube-scheduler writes a Warning Event
\`FailedScheduling\` (\`0/2 nodes are available: 2 Insufficient cpu. ...\`, through \`events.k8s.io/v1\`) for each
Pod, and sets the Pod's \`PodScheduled\` condition to False. Each time a \`batch-N\` Pod is deleted the freed CPU makes
the scheduler retry the pending Pods and fail again. Its event library (client-go \`tools/events\`) keys Events by
their object reference, resourceVersion included: the first retry, after the scheduler's own status patch of the
Pod, writes a new Event; the next one sets that Event's \`series.count\` to 2; further repeats are counted in
memory and written every 30 minutes, so no later writes appear here. The Warning Event writes:

$(recorded_requests 'select(.objectRef.resource == "events" and .user.username == "system:kube-scheduler" and (.objectRef.name | startswith("greedy")))')

\`deployments/default/unbounded\` (1 replica, no resource requests) runs into ResourceQuota \`no-best-effort\`
(scope BestEffort, \`pods: 0\`, created before the recording): each Pod create by its ReplicaSet's controller is
answered 403 (\`exceeded quota: no-best-effort\`), and the controller retries with a growing backoff. Each failure
is a Warning Event \`FailedCreate\` (core/v1, through the controller-manager's event correlator): separate Events
at first (their messages name the generated Pod names), then one Event \`(combined from similar events)\` whose
\`count\` is patched up with each further failure. The failed creates (no name: the Pods were never stored):

$(recorded_requests 'select(.objectRef.resource == "pods" and .responseStatus.code == 403)')

The Warning Events as \`events.watch.yaml\` saw them (core/v1 view; the highest count seen):

$(warning_summary)

## Healthy look-alikes

\`pods/default/normal\` and \`pods/default/batch-1\` .. \`batch-7\` (100m CPU each) are scheduled at once (Normal Event
\`Scheduled\`) and reported Running by kwok; the \`batch-N\` Pods are deleted 4 s later.

## No image-pull failures

kwok cannot show an image that cannot be pulled with the Stages the test cluster runs (\`scripts/cluster/build\`
takes kwok's "fast" set: \`pod-ready\` makes every scheduled Pod Running whatever its image, and no Stage writes
Events). kwok's Stage API could (a Stage whose \`next.statusTemplate\` sets a container's
\`state.waiting.reason: ImagePullBackOff\` and whose \`next.event\` writes a Warning), but that needs an extra Stage
in the stages file that \`scripts/cluster/up\` passes to kwok, with \`pod-ready\` excluding such Pods.
MD
}
