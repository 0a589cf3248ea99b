# shellcheck shell=bash disable=SC2034  # FREE_PORTS is read by the scripts that source this file
# Picking loopback ports for the test services. Sourced, never run.
#
# Each service picks from a range of its own, all below Linux's default ephemeral range (32768-60999), so a port
# picked here is never one the kernel hands to an outgoing connection or to a bind on port 0:
#   kafka 10000-15999   cluster 16000-23999   jaeger 24000-28999   prometheus 29000-32767

# free_ports LOW HIGH N: sets the array FREE_PORTS to N distinct ports in [LOW, HIGH) that nothing listens on
# on 127.0.0.1 now (checked with bash's /dev/tcp). It runs in the caller's shell, not in $(...), so that one call
# never hands out the same port twice. Returns 1 when 1,000 tries found too few.
free_ports() {
  local low="$1" high="$2" count="$3" port tries=0
  FREE_PORTS=()
  while ((${#FREE_PORTS[@]} < count)); do
    ((tries++ < 1000)) || return 1
    port=$((low + (RANDOM * 32768 + RANDOM) % (high - low)))
    [[ " ${FREE_PORTS[*]} " == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      FREE_PORTS+=("$port")
    fi
  done
}
