# shellcheck shell=bash disable=SC2034,SC2154  # sourced by scripts/cluster/record-scenario, which reads the
# variables and sets $out (the output folder) for scenario_readme
# failed-requests: one user's writes forbidden again and again (403), the admin's invalid patches (422); beside them
# the expected optimistic-concurrency conflict (409) that its writer retries successfully.
SCENARIO_SUMMARY="Repeated failed requests on one object by one user: \`alice\` tries to label ConfigMap \`target\` 5 times, 3 s apart, and is forbidden each time (403); the admin patches Deployment \`web\` with \`spec.replicas: -1\` 4 times (422 Invalid). Healthy look-alike: \`editor-2\` replaces ConfigMap \`shared\` with a stale resourceVersion (409 Conflict) and succeeds on its retry."
SCENARIO_RESOURCES="configmaps deployments replicasets pods events"
SCENARIO_WATCHES="configmaps deployments replicasets pods"

scenario_setup() {
  step "RBAC: alice may get and list configmaps; editor-1 and editor-2 may also update them"
  kc create role configmap-reader --verb=get,list --resource=configmaps >/dev/null
  kc create rolebinding alice-reads-configmaps --role=configmap-reader --user=alice >/dev/null
  kc create role configmap-editor --verb=get,list,update --resource=configmaps >/dev/null
  kc create rolebinding editors-edit-configmaps --role=configmap-editor --user=editor-1 --user=editor-2 >/dev/null
}

scenario_run() {
  local attempt stale
  step "create ConfigMap target, ConfigMap shared and Deployment web (1 replica)"
  kc create configmap target --from-literal=purpose=labelled-by-alice >/dev/null
  kc create configmap shared --from-literal=value=0 >/dev/null
  kc create deployment web --image=busybox:1.36 --replicas=1 >/dev/null
  sleep 3
  for attempt in 1 2 3 4 5; do
    step "alice: kubectl label configmap target reviewed=$attempt (403 Forbidden), attempt $attempt of 5"
    kc label configmap target "reviewed=$attempt" --overwrite --as=alice >/dev/null 2>&1 || true
    sleep 3
  done
  for attempt in 1 2 3 4; do
    step "admin: kubectl patch deployment web spec.replicas=-1 (422 Invalid), attempt $attempt of 4"
    kc patch deployment web --type=merge -p '{"spec":{"replicas":-1}}' >/dev/null 2>&1 || true
    sleep 3
  done
  stale="$CLUSTER_RECORDING_DIR/shared.stale.yaml"
  step "editor-1 and editor-2 both read ConfigMap shared"
  kc get configmap shared -o yaml --as=editor-2 >"$stale"
  kc get configmap shared -o yaml --as=editor-1 | sed 's/^  value: "0"$/  value: "1"/' | kc replace -f - --as=editor-1 >/dev/null
  step "editor-1 replaced it (value 1); editor-2 replaces its stale copy (409 Conflict)"
  sed 's/^  value: "0"$/  value: "2"/' "$stale" | kc replace -f - --as=editor-2 >/dev/null 2>&1 || true
  sleep 1
  step "editor-2 retries: reads shared again and replaces it (200)"
  kc get configmap shared -o yaml --as=editor-2 | sed 's/^  value: "1"$/  value: "2"/' | kc replace -f - --as=editor-2 >/dev/null
  sleep 5
}

scenario_readme() {
  cat <<MD
## The pattern

User \`alice\` (impersonated by the admin with \`kubectl --as=alice\`; RBAC lets her get and list configmaps, not
patch them) runs \`kubectl label configmap target reviewed=N\` five times, 3 s apart: each time kubectl's GET
succeeds (a read, not recorded) and its PATCH is answered 403 Forbidden. Then the admin (\`kelemetry-admin\`) patches
\`deployments/default/web\` with \`{"spec":{"replicas":-1}}\` four times, 3 s apart: 422 Invalid
(\`spec.replicas: Invalid value: -1: must be greater than or equal to 0\`).

$(recorded_requests 'select((.objectRef.name == "target" or .objectRef.name == "web") and (.responseStatus.code == 403 or .responseStatus.code == 422))')

## Healthy look-alike

\`configmaps/default/shared\`: \`editor-2\` and \`editor-1\` read it at the same resourceVersion; \`editor-1\` replaces
it first; \`editor-2\`'s \`kubectl replace\` of its stale copy is answered 409 Conflict; \`editor-2\` reads it again
and its replace succeeds (200): expected optimistic concurrency, not a failure. The Deployment's controllers may
also meet 409 conflicts of their own on \`web\` and its ReplicaSet, which they retry.

$(recorded_requests 'select(.objectRef.name == "shared" and .verb != "create")')

Other 409 conflicts in the recording (controllers retrying):

$(recorded_requests 'select(.objectRef.name != "shared" and .responseStatus.code == 409)')
MD
}
