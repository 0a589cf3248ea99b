# shellcheck shell=bash disable=SC2034,SC2154  # sourced by scripts/cluster/record-scenario, which reads the
# variables and sets $out (the output folder) for scenario_readme
# stuck-deletion: a ConfigMap deleted while a finalizer nobody removes holds it; beside it, one whose finalizer is
# removed 3 s after its delete (the normal course of a finalizer).
SCENARIO_SUMMARY="A deletion that never completes: ConfigMap \`stuck\` keeps its deletionTimestamp and its finalizer \`example.com/never-removed\` for 45 s after its delete. Healthy look-alike: ConfigMap \`released\`, whose finalizer \`example.com/removed-soon\` is removed 3 s after its delete, so it disappears."
SCENARIO_RESOURCES="configmaps"
SCENARIO_WATCHES="configmaps"

# new_configmap NAME FINALIZER: creates ConfigMap NAME holding FINALIZER.
new_configmap() {
  kc create -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: $1
  finalizers: ["$2"]
data:
  owner: example.com
YAML
}

scenario_run() {
  step "create ConfigMap stuck (finalizer example.com/never-removed) and ConfigMap released (finalizer example.com/removed-soon)"
  new_configmap stuck example.com/never-removed
  new_configmap released example.com/removed-soon
  sleep 3
  step "kubectl delete --wait=false configmap stuck and configmap released"
  kc delete configmap stuck released --wait=false >/dev/null
  sleep 3
  step "remove the finalizer of released (a JSON patch of metadata.finalizers): it disappears"
  kc patch configmap released --type=json -p '[{"op": "remove", "path": "/metadata/finalizers"}]' >/dev/null
  step "wait: stuck keeps its deletionTimestamp and finalizer"
  sleep 37
  step "delete configmap stuck again, as a user whose delete seems to hang would (200: still there, finalizer and all)"
  kc delete configmap stuck --wait=false >/dev/null
  sleep 5
}

scenario_readme() {
  local deleted_at
  deleted_at="$(jq -r 'select(.objectRef.name == "stuck" and .verb == "delete") | .requestReceivedTimestamp' \
    "$out/audit.log" | head -n1)"
  cat <<MD
## The pattern

\`configmaps/default/stuck\` is created with \`metadata.finalizers: ["example.com/never-removed"]\` and deleted
(\`kubectl delete --wait=false\`) at $deleted_at: the apiserver answers 200 and sets
\`metadata.deletionTimestamp\`, but keeps the object because of the finalizer. No controller removes
\`example.com/never-removed\`, so for the remaining 45 s of the recording the object stays with its deletionTimestamp
and finalizer (the last watch event of \`stuck\` in \`objects.watch.yaml\` is a MODIFIED with both; there is no
DELETED).

## Healthy look-alike

\`configmaps/default/released\` is created with \`example.com/removed-soon\` and deleted in the same request; 3 s
later a patch removes its finalizer and the apiserver deletes it (watch event DELETED). A finalizer that is present
for a few seconds after a delete is the normal course; only one still present after a threshold is stuck.

The requests on both:

$(recorded_requests 'select(.objectRef.name == "stuck" or .objectRef.name == "released")')
MD
}
