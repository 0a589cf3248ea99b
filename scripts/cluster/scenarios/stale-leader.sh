# shellcheck shell=bash disable=SC2034,SC2154  # sourced by scripts/cluster/record-scenario, which reads the
# variables and sets $out (the output folder) for scenario_readme
# stale-leader: the original's incident 2. A leader-elected controller keeps renewing its Lease while the object it
# should update every 5 s goes stale; its first 30 s, while it still does its work, are the healthy look-alike.
SCENARIO_SUMMARY="An elected leader that renews its Lease while its work goes stale (the original Kelemetry's incident 2): \`system:serviceaccount:default:demo-controller\` renews Lease \`demo-controller\` every 2 s and updates ConfigMap \`heartbeat\` every 5 s for 30 s; then it stops updating \`heartbeat\` while renewing the Lease for 60 s more. Healthy look-alike: the same pair in the first 30 s."
SCENARIO_RESOURCES="leases configmaps events"
SCENARIO_WATCHES="leases configmaps"

controller=system:serviceaccount:default:demo-controller
holder=demo-controller-6f5d8c7b9-x2k4q

scenario_setup() {
  step "ServiceAccount demo-controller; RBAC: it may manage leases and configmaps in default"
  kc create serviceaccount demo-controller >/dev/null
  kc create role demo-controller --verb=get,list,watch,create,update,patch \
    --resource=leases.coordination.k8s.io,configmaps >/dev/null
  kc create rolebinding demo-controller --role=demo-controller --serviceaccount=default:demo-controller >/dev/null
}

# ctl ARGS...: kubectl as the controller.
ctl() { kc "$@" --as="$controller"; }

# renew_lease SECONDS: renews Lease demo-controller (spec.renewTime, holderIdentity) every 2 s for SECONDS.
renew_lease() {
  local until=$((SECONDS + $1))
  while ((SECONDS < until)); do
    sleep 2 &
    ctl patch lease demo-controller --type=merge \
      -p "{\"spec\":{\"holderIdentity\":\"$holder\",\"renewTime\":\"$(cluster_timestamp)\"}}" >/dev/null
    wait "$!"
  done
}

scenario_run() {
  local now beat
  now="$(cluster_timestamp)"
  step "demo-controller acquires Lease demo-controller (holder $holder, 15 s lease) and creates ConfigMap heartbeat"
  ctl create -f - >/dev/null <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: demo-controller
spec:
  holderIdentity: $holder
  leaseDurationSeconds: 15
  acquireTime: "$now"
  renewTime: "$now"
  leaseTransitions: 0
YAML
  ctl create configmap heartbeat --from-literal=beat=0 --from-literal=at="$now" >/dev/null
  renew_lease 92 &
  local renewer="$!"
  step "healthy: the Lease is renewed every 2 s and heartbeat updated every 5 s"
  for beat in 1 2 3 4 5 6; do
    sleep 5
    ctl patch configmap heartbeat --type=merge \
      -p "{\"data\":{\"beat\":\"$beat\",\"at\":\"$(cluster_timestamp)\"}}" >/dev/null
  done
  step "stall: demo-controller stops updating heartbeat; it keeps renewing the Lease every 2 s for 60 s"
  wait "$renewer"
  step "demo-controller stops"
  sleep 2
}

scenario_readme() {
  local last_beat last_renew renewals
  last_beat="$(jq -r 'select(.objectRef.name == "heartbeat" and .verb == "patch") | .requestReceivedTimestamp' \
    "$out/audit.log" | tail -n1)"
  last_renew="$(jq -r 'select(.objectRef.resource == "leases" and .verb == "patch") | .requestReceivedTimestamp' \
    "$out/audit.log" | tail -n1)"
  renewals="$(jq -s '[.[] | select(.objectRef.resource == "leases" and .verb == "patch")] | length' "$out/audit.log")"
  cat <<MD
## The pattern

\`system:serviceaccount:default:demo-controller\` (impersonated by the admin with \`kubectl --as\`; RBAC lets it
manage leases and configmaps in \`default\`) plays a leader-elected controller: it creates
\`leases.coordination.k8s.io/default/demo-controller\` (holderIdentity \`$holder\`, leaseDurationSeconds 15) and
renews it every 2 s ($renewals renewals: \`kubectl patch\` of \`spec.renewTime\` and \`spec.holderIdentity\`, the last
at $last_renew). Its work is \`configmaps/default/heartbeat\`, updated every 5 s (\`data.beat\` 1..6, \`data.at\`).
After the last update at $last_beat it stops working but goes on renewing its Lease for 60 s: alive, elected, and
not doing its work. The audit policy logs leases at level Metadata (no bodies): \`objects.watch.yaml\` holds the
Lease's versions with \`holderIdentity\` and \`renewTime\`.

## Healthy look-alike

The first 30 s: the same Lease renewed every 2 s while \`heartbeat\` is updated every 5 s.

$(recorded_requests 'select(.objectRef.name == "heartbeat")')

The Lease's first and last requests:

$(recorded_requests 'select(.objectRef.resource == "leases")' | sed -n '1,5p;$p')
MD
}
