# shellcheck shell=bash disable=SC2034,SC2154  # sourced by scripts/cluster/record-scenario, which reads the
# variables and sets $out (the output folder) for scenario_readme
# controller-fight: two writers flipping the same field; one writer updating one object in a hot loop; beside them
# an object updated now and then by one writer.
SCENARIO_SUMMARY="Two writers fighting over a field and a hot loop: \`writer-a\` and \`writer-b\` alternately set ConfigMap \`fought\`'s \`data.mode\` to \`a\` and \`b\`, one write every 2 s for 40 s, each with its own field manager; \`writer-a\` updates ConfigMap \`hot\`'s annotation \`example.com/round\` 100 times in about 70 s, more than 60 times a minute. Healthy look-alike: ConfigMap \`calm\`, updated 3 times by \`writer-c\` in the same period."
SCENARIO_RESOURCES="configmaps events"
SCENARIO_WATCHES="configmaps"

scenario_setup() {
  step "RBAC: writer-a, writer-b and writer-c may get, patch and update configmaps"
  kc create role configmap-writer --verb=get,list,patch,update --resource=configmaps >/dev/null
  kc create rolebinding writers-write-configmaps --role=configmap-writer \
    --user=writer-a --user=writer-b --user=writer-c >/dev/null
}

# fight: writer-b and writer-a take turns setting fought's data.mode, one write every 2 s for 40 s.
fight() {
  local turn writer
  for turn in $(seq 1 20); do
    if ((turn % 2 == 1)); then writer=b; else writer=a; fi
    kc patch configmap fought --type=merge -p "{\"data\":{\"mode\":\"$writer\"}}" \
      --as="writer-$writer" --field-manager="writer-$writer" >/dev/null
    sleep 2
  done
}

# hot_loop: writer-a sets hot's annotation example.com/round to 1..100, one update every 0.7 s or as fast as
# kubectl goes: sustained past a minute, above the hot-loop threshold of 60 writes a minute.
hot_loop() {
  local round
  for round in $(seq 1 100); do
    sleep 0.7 &
    kc annotate configmap hot "example.com/round=$round" --overwrite --as=writer-a --field-manager=writer-a >/dev/null
    wait "$!"
  done
}

# calm_writes: writer-c sets calm's data.round to 1, 2, 3, 12 s apart.
calm_writes() {
  local round
  for round in 1 2 3; do
    sleep 6
    kc patch configmap calm --type=merge -p "{\"data\":{\"round\":\"$round\"}}" \
      --as=writer-c --field-manager=writer-c >/dev/null
    sleep 6
  done
}

scenario_run() {
  step "create ConfigMaps fought (mode: a), hot and calm (round: 0)"
  kc create configmap fought --from-literal=mode=a >/dev/null
  kc create configmap hot --from-literal=purpose=hot-loop >/dev/null
  kc create configmap calm --from-literal=round=0 >/dev/null
  sleep 2
  step "start: writer-a and writer-b flip fought's data.mode every 2 s (40 s); writer-a annotates hot 100 times; writer-c updates calm 3 times"
  local pids=()
  fight &
  pids+=("$!")
  hot_loop &
  pids+=("$!")
  calm_writes &
  pids+=("$!")
  wait "${pids[@]}"
  step "all writers done"
  sleep 3
}

scenario_readme() {
  cat <<MD
## The pattern

**A fight**: \`configmaps/default/fought\` is patched 20 times, one write every 2 s, alternately by \`writer-a\`
(field manager \`writer-a\`, sets \`data.mode\` to \`a\`) and \`writer-b\` (field manager \`writer-b\`, sets it to \`b\`):
each write undoes the other's. (Users impersonated by the admin with \`kubectl --as\`; RBAC lets them get, patch
and update configmaps.)

$(recorded_requests 'select(.objectRef.name == "fought" and .verb == "patch")')

**A hot loop**: \`configmaps/default/hot\` is patched $(jq -s '[.[] | select(.objectRef.name == "hot" and .verb == "patch")] | length' "$out/audit.log") times by \`writer-a\`
(\`kubectl annotate --overwrite example.com/round=N\`, N = 1..100), from
$(jq -rs '[.[] | select(.objectRef.name == "hot" and .verb == "patch")] | "\(first.requestReceivedTimestamp) to \(last.requestReceivedTimestamp)"' "$out/audit.log").

## Healthy look-alike

\`configmaps/default/calm\` is patched 3 times by \`writer-c\` (\`data.round\` 1, 2, 3) in the same period: one writer,
a few updates, nothing undone.

$(recorded_requests 'select(.objectRef.name == "calm")')
MD
}
