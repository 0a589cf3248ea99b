// A generated audit log with one finding for the viewer's findings panel: the admin creates ConfigMap
// `default/target`, then user `alice` patches it `refused` times, 3 s apart, and RBAC refuses each patch (403
// Forbidden), which the built-in `failed-requests` diagnoser reports. Used when no recording of that pattern
// (fixtures/recorded/failed-requests) is there.

const START = Date.parse("2026-11-28T03:00:00Z");

function stamp(ms) {
  return new Date(ms).toISOString().replace(/(\.\d{3})Z$/, "$1000Z");
}

function audit(n, { at, verb, user, code, request, response }) {
  return JSON.stringify({
    kind: "Event",
    apiVersion: "audit.k8s.io/v1",
    level: "RequestResponse",
    auditID: `00000000-0000-4000-9000-${String(n).padStart(12, "0")}`,
    stage: "ResponseComplete",
    requestURI: verb === "create" ? "/api/v1/namespaces/default/configmaps" : "/api/v1/namespaces/default/configmaps/target",
    verb,
    user: { username: user },
    sourceIPs: ["127.0.0.1"],
    userAgent: "viewer-test",
    objectRef: { resource: "configmaps", namespace: "default", name: "target", apiVersion: "v1" },
    responseStatus: { metadata: {}, code },
    requestObject: request,
    responseObject: response,
    requestReceivedTimestamp: stamp(at),
    stageTimestamp: stamp(at + 4),
  });
}

/** The audit log's lines: the create, then `refused` forbidden patches by alice. */
export function refusedPatches(refused) {
  const configMap = {
    kind: "ConfigMap",
    apiVersion: "v1",
    metadata: { name: "target", namespace: "default", uid: "00000000-0000-4000-9000-000000000001", resourceVersion: "700" },
    data: { purpose: "labelled-by-alice" },
  };
  const lines = [audit(0, { at: START, verb: "create", user: "kelemetry-admin", code: 201, request: configMap, response: configMap })];
  for (let attempt = 1; attempt <= refused; attempt++) {
    const message = `configmaps "target" is forbidden: User "alice" cannot patch resource "configmaps" in API group "" in the namespace "default"`;
    lines.push(audit(attempt, {
      at: START + attempt * 3000,
      verb: "patch",
      user: "alice",
      code: 403,
      request: { metadata: { labels: { reviewed: String(attempt) } } },
      response: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason: "Forbidden", details: { name: "target", kind: "configmaps" }, code: 403 },
    }));
  }
  return lines.join("\n") + "\n";
}
