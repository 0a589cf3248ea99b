//! A linker of one's own, depending on the `kelemetry` crate alone: an Ingress is the parent of the Services its
//! rules and default backend route to, so an Ingress's tree shows them and a Service's ancestors show its Ingress.

use kelemetry::link::body_of;
use kelemetry::{Link, LinkError, Linker, Object, ObjectLookup, ObjectRef, async_trait};

/// Links a `networking.k8s.io` Ingress to each Service it routes to, as children of class `backend`.
#[derive(Debug, Default, Clone, Copy)]
pub struct IngressServiceLinker;

#[async_trait]
impl Linker for IngressServiceLinker {
    fn name(&self) -> &str {
        "ingress-services"
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let key = object.key();
        if !key.is("networking.k8s.io", "ingresses") {
            return Ok(vec![]);
        }
        let body = body_of(object, lookup).await.unwrap_or_default();
        let rules = body["spec"]["rules"].as_array().into_iter().flatten();
        let paths = rules.flat_map(|rule| rule["http"]["paths"].as_array().into_iter().flatten());
        let default_backend = [&body["spec"]["defaultBackend"]];
        let backends = paths.map(|path| &path["backend"]).chain(default_backend);
        let names = backends.filter_map(|backend| backend["service"]["name"].as_str());
        let service = |name| ObjectRef::new(key.sibling("", "services", name), "v1", None);
        let link = |name| Link::child(service(name)).with_class("backend");
        // A Service named twice gives the same link twice; the pipeline writes it once.
        Ok(names.map(|name| link(name).with_dedup_id(name)).collect())
    }
}
