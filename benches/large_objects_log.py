#!/usr/bin/env python3
"""Writes an audit log of large objects, to measure what large records and spans cost (benches/README.md).

    python3 benches/large_objects_log.py OBJECTS VERSIONS BLOB_BYTES FILE

Each of OBJECTS ConfigMaps in namespace `ns` is created and then updated VERSIONS - 1 times, one line per request
at the RequestResponse level, all versions of one round before the next. Every version carries BLOB_BYTES of new
random base64 text in `data.blob`, so every update's span holds a diff of about twice that.
"""

import base64
import json
import os
import sys


def event(serial: int, round_: int, index: int, blob_bytes: int) -> dict:
    name = f"big-{index:05d}"
    at = f"2024-05-01T12:{(serial // 60000) % 60:02d}:{(serial // 1000) % 60:02d}.{(serial % 1000) * 1000:06d}Z"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"00000000-0000-0000-0000-{index:012d}",
            "resourceVersion": str(serial),
        },
        "data": {"blob": base64.b64encode(os.urandom(blob_bytes * 3 // 4)).decode()},
    }
    create = round_ == 0
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": f"large-{serial}",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/ns/configmaps" + ("" if create else f"/{name}"),
        "verb": "create" if create else "update",
        "user": {"username": "alice"},
        "sourceIPs": ["10.0.0.1"],
        "objectRef": {"resource": "configmaps", "namespace": "ns", "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201 if create else 200},
        "responseObject": body,
        "requestReceivedTimestamp": at,
        "stageTimestamp": at,
    }


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    objects, versions, blob_bytes = (int(arg) for arg in sys.argv[1:4])
    serial = 0
    with open(sys.argv[4], "w", encoding="utf-8") as out:
        for round_ in range(versions):
            for index in range(objects):
                serial += 1
                out.write(json.dumps(event(serial, round_, index, blob_bytes)) + "\n")


if __name__ == "__main__":
    main()
