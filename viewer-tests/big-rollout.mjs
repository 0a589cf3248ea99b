// A generated audit log of a Deployment `big` with two ReplicaSets of `pods / 2` Pods each, for the viewer's
// speed test: every object is created (with ownerReferences, so the owner linker nests them), every Pod is bound,
// gets a status patch with a diff, and every tenth Pod has a failed request.

const START = Date.parse("2026-11-28T02:00:00Z");

function uid(n) {
  return `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
}

function stamp(ms) {
  return new Date(ms).toISOString().replace(/(\.\d{3})Z$/, "$1000Z");
}

let audits = 0;
function audit({ at, verb, user, resource, group, name, subresource, code, request, response }) {
  audits += 1;
  const apiPath = group ? `/apis/${group}/v1` : "/api/v1";
  return JSON.stringify({
    kind: "Event",
    apiVersion: "audit.k8s.io/v1",
    level: "RequestResponse",
    auditID: uid(9e11 + audits),
    stage: "ResponseComplete",
    requestURI: `${apiPath}/namespaces/default/${resource}/${name}${subresource ? `/${subresource}` : ""}`,
    verb,
    user: { username: user },
    sourceIPs: ["127.0.0.1"],
    userAgent: "viewer-test",
    objectRef: { resource, namespace: "default", name, apiGroup: group, apiVersion: "v1", subresource },
    responseStatus: { metadata: {}, code },
    requestObject: request,
    responseObject: response,
    requestReceivedTimestamp: stamp(at),
    stageTimestamp: stamp(at + 3),
  });
}

function object(kind, apiVersion, name, id, version, owner, spec, status) {
  const metadata = { name, namespace: "default", uid: uid(id), resourceVersion: String(version) };
  if (owner) {
    metadata.ownerReferences = [{ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true }];
  }
  return { kind, apiVersion, metadata, spec, status };
}

/** The audit log's lines for `pods` Pods. */
export function bigRollout(pods) {
  const lines = [];
  let version = 1000;
  let t = START;
  const deployment = object("Deployment", "apps/v1", "big", 1, version++, null, { replicas: pods }, {});
  lines.push(audit({ at: t, verb: "create", user: "admin", resource: "deployments", group: "apps", name: "big", code: 201, request: deployment, response: deployment }));
  const owners = [];
  for (const [i, hash] of ["aaaa1", "bbbb2"].entries()) {
    const rs = object("ReplicaSet", "apps/v1", `big-${hash}`, 10 + i, version++,
      { apiVersion: "apps/v1", kind: "Deployment", name: "big", uid: uid(1) }, { replicas: pods / 2 }, {});
    t += 1000;
    lines.push(audit({ at: t, verb: "create", user: "system:serviceaccount:kube-system:deployment-controller", resource: "replicasets", group: "apps", name: rs.metadata.name, code: 201, request: rs, response: rs }));
    owners.push({ apiVersion: "apps/v1", kind: "ReplicaSet", name: rs.metadata.name, uid: rs.metadata.uid });
  }
  for (let p = 0; p < pods; p++) {
    const owner = owners[p % 2];
    const name = `${owner.name}-p${String(p).padStart(4, "0")}`;
    t += 20;
    const created = object("Pod", "v1", name, 1000 + p, version++, owner, { nodeName: null }, { phase: "Pending" });
    lines.push(audit({ at: t, verb: "create", user: "system:serviceaccount:kube-system:replicaset-controller", resource: "pods", group: "", name, code: 201, request: created, response: created }));
    const running = object("Pod", "v1", name, 1000 + p, version++, owner, { nodeName: `node-${p % 7}` }, { phase: "Running" });
    lines.push(audit({ at: t + 5000, verb: "patch", user: "system:node", resource: "pods", group: "", name, subresource: "status", code: 200, request: { status: { phase: "Running" } }, response: running }));
    if (p % 10 === 0) {
      lines.push(audit({ at: t + 6000, verb: "update", user: "system:node", resource: "pods", group: "", name, subresource: "status", code: 409, request: running, response: { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Conflict", code: 409 } }));
    }
  }
  return lines.join("\n") + "\n";
}
