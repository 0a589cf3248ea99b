//! The linker through a real pipeline, store and read side.

use std::sync::Arc;

use ingress_linker::IngressServiceLinker;
use kelemetry::Linker;
use kelemetry::testing::{block_on, object, seen, trace_tree};
use serde_json::json;

#[test]
fn an_ingress_is_the_parent_of_its_backend_services() {
    let backend = |name: &str| json!({"service": {"name": name, "port": {"number": 80}}});
    let body = json!({"spec": {"defaultBackend": backend("fallback"), "rules": [{"http": {"paths": [
        {"path": "/", "backend": backend("front")}, {"path": "/api", "backend": backend("api")}]}}]}});
    let ingress = object("networking.k8s.io", "ingresses", "shop", "web", body);
    let linker: Arc<dyn Linker> = Arc::new(IngressServiceLinker);
    let records = [seen(&ingress, "2024-05-01T12:00:00Z")];
    let tree = block_on(trace_tree([linker], records, ingress.key())).expect("a tree");
    let expected = "ingresses/web\n  services/api (backend)\n  services/fallback (backend)\n  services/front (backend)\n";
    assert_eq!(tree.to_string(), expected);
}
