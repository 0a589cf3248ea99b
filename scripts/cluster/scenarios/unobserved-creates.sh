# shellcheck shell=bash disable=SC2034,SC2154  # sourced by scripts/cluster/record-scenario, which reads the
# variables and sets $out (the output folder) for scenario_readme
# unobserved-creates: the original's incident 1, a ReplicaSet creating Pods it never counts. A MutatingAdmissionPolicy
# changes the label of the Pods created for ReplicaSet flaky, so they no longer match its selector: the controller
# releases each one and creates another. Beside it, ReplicaSet steady, whose Pods keep their labels.
SCENARIO_SUMMARY="A ReplicaSet creating Pods it never counts (the original Kelemetry's incident 1): MutatingAdmissionPolicy \`relabel-flaky-pods\` changes the label \`app: flaky\` of each new Pod to \`app: flaky-relabelled\`, so ReplicaSet \`flaky\` (1 replica, selector \`app=flaky\`) never counts the Pods it creates: it keeps creating them (SuccessfulCreate after SuccessfulCreate) while its \`status.replicas\` stays 0, until it is deleted. Healthy look-alike: ReplicaSet \`steady\` (2 replicas), whose 2 Pods are created once and counted."
SCENARIO_RESOURCES="replicasets pods events"
SCENARIO_WATCHES="replicasets pods"
SCENARIO_APISERVER_FEATURES="--feature-gates=MutatingAdmissionPolicy=true --runtime-config=admissionregistration.k8s.io/v1beta1=true"

# Stop once this many Pods were created for flaky, or after this many seconds.
flaky_pods_max=20
flaky_seconds_max=20

scenario_setup() {
  step "MutatingAdmissionPolicy relabel-flaky-pods and its binding (admissionregistration.k8s.io/v1beta1)"
  kc apply -f - >/dev/null <<'YAML'
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata:
  name: relabel-flaky-pods
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  matchConditions:
  - name: labelled-flaky
    expression: "has(object.metadata.labels) && object.metadata.labels[?'app'].orValue('') == 'flaky'"
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{metadata: Object.metadata{labels: {"app": "flaky-relabelled"}}}
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: relabel-flaky-pods
spec:
  policyName: relabel-flaky-pods
YAML
  # The apiserver picks policies up from its informer: wait until a dry-run Pod comes back relabelled.
  local tries=0
  until [[ "$(kc run probe --image=busybox:1.36 --labels=app=flaky --dry-run=server \
    -o jsonpath='{.metadata.labels.app}')" == flaky-relabelled ]]; do
    tries=$((tries + 1))
    ((tries < 30)) || cluster_die "MutatingAdmissionPolicy relabel-flaky-pods never took effect"
    sleep 1
  done
}

# replicaset NAME REPLICAS: creates ReplicaSet NAME selecting app=NAME.
replicaset() {
  kc create -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: $1
spec:
  replicas: $2
  selector:
    matchLabels: {app: $1}
  template:
    metadata:
      labels: {app: $1}
    spec:
      containers:
      - name: app
        image: busybox:1.36
YAML
}

scenario_run() {
  local started=$SECONDS created=0
  step "create ReplicaSet steady (2 replicas, selector app=steady)"
  replicaset steady 2
  sleep 3
  step "create ReplicaSet flaky (1 replica, selector app=flaky): its Pods are relabelled app=flaky-relabelled at admission"
  replicaset flaky 1
  started=$SECONDS
  while ((created < flaky_pods_max && SECONDS - started < flaky_seconds_max)); do
    sleep 0.2
    created="$(kc get pods -l app=flaky-relabelled -o name | wc -l)"
  done
  step "delete ReplicaSet flaky after $created Pods and $((SECONDS - started)) s; status.replicas: $(kc get rs flaky -o jsonpath='{.status.replicas}')"
  kc delete replicaset flaky --wait=false >/dev/null
  sleep 5
}

scenario_readme() {
  local creates first last
  creates="$(jq -s '[.[] | select(.objectRef.resource == "pods" and .verb == "create" and (.objectRef.subresource // "") == ""
    and (.responseObject.metadata.labels.app // "") == "flaky-relabelled")] | length' "$out/audit.log")"
  first="$(jq -rs '[.[] | select(.objectRef.resource == "pods" and .verb == "create" and (.objectRef.subresource // "") == ""
    and (.responseObject.metadata.labels.app // "") == "flaky-relabelled")] | first.requestReceivedTimestamp' "$out/audit.log")"
  last="$(jq -rs '[.[] | select(.objectRef.resource == "pods" and .verb == "create" and (.objectRef.subresource // "") == ""
    and (.responseObject.metadata.labels.app // "") == "flaky-relabelled")] | last.requestReceivedTimestamp' "$out/audit.log")"
  cat <<MD
## The pattern

The apiserver ran with the \`MutatingAdmissionPolicy\` feature gate and \`admissionregistration.k8s.io/v1beta1\`
served. Before the recording, MutatingAdmissionPolicy \`relabel-flaky-pods\` (and its binding) was created: on Pod
CREATE, when the Pod's label \`app\` is \`flaky\`, it applies \`metadata.labels.app: flaky-relabelled\`.

\`replicasets/default/flaky\` (1 replica, selector \`app=flaky\`) asks for a Pod; the replicaset-controller creates it
(\`system:serviceaccount:kube-system:replicaset-controller\`, 201) with \`app: flaky\` and an ownerReference to
\`flaky\`; admission changes the label, so the stored Pod does not match the selector. The controller sees the Pod
(its ownerReference names \`flaky\`), finds that it no longer matches, releases it (a patch removing the
ownerReference), counts 0 Pods and creates another. $creates Pods were created for \`flaky\`, from $first
to $last;
its \`status.replicas\` stayed 0 and its Events are SuccessfulCreate after SuccessfulCreate (after ten, the
correlator combines them: \`(combined from similar events)\` with a growing count). Then \`flaky\` is deleted; its
released Pods stay (nothing owns them any more).

The ReplicaSet's own writes (status):

$(recorded_requests 'select(.objectRef.resource == "replicasets" and .objectRef.name == "flaky")')

## Healthy look-alike

\`replicasets/default/steady\` (2 replicas, selector \`app=steady\`): its 2 Pods keep their labels, are counted
(\`status.replicas\` 2, then \`readyReplicas\` 2 once kwok reports them Running), and nothing more is created.

$(recorded_requests 'select(.objectRef.resource == "replicasets" and .objectRef.name == "steady")')

Other failed requests in the recording: the replicaset-controller's status update conflicts (409, retried); kwok's
status patches of some of the quickly created Pods (422: kwok gave them two Pod IPs of one family, a kwok race at
this rate); the garbage collector's and kwok's deletes of the last Pod, still owned by \`flaky\` when \`flaky\` was deleted
(they race: a 409 or a 404 for the one that loses):

$(recorded_requests 'select((.responseStatus.code // 0) >= 400)')
MD
}
