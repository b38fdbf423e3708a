//! The Prometheus Operator ServiceMonitor (a `DynamicObject`: its CRD is optional in a cluster).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{child_meta, Names, SERVICE_ROLE_LABEL};
use crate::crd::KafkaGateway;
use crate::Result;

/// Name of the ServiceMonitor CRD, checked before applying one.
pub const CRD_NAME: &str = "servicemonitors.monitoring.coreos.com";

/// The ServiceMonitor API resource.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// A ServiceMonitor scraping `/metrics` on the admin port of every pod (through the headless
/// Service, which lists all pods), or `None` when disabled in the spec.
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn build(kgw: &KafkaGateway, names: &Names) -> Result<Option<DynamicObject>> {
    if !kgw.spec.metrics.service_monitor {
        return Ok(None);
    }
    let mut selector = names.selector_labels();
    selector.insert(SERVICE_ROLE_LABEL.into(), "peers".into());
    let mut endpoint = json!({ "port": "admin", "path": "/metrics" });
    if let Some(interval) = &kgw.spec.metrics.scrape_interval {
        endpoint["interval"] = json!(interval);
    }
    let mut obj = DynamicObject::new(&names.name, &api_resource()).within(&names.namespace);
    obj.metadata = child_meta(kgw, names, names.name.clone())?;
    obj.data = json!({
        "spec": {
            "selector": { "matchLabels": selector },
            "namespaceSelector": { "matchNames": [names.namespace] },
            "endpoints": [endpoint],
        }
    });
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;

    #[test]
    fn disabled_by_default() {
        let kgw = KafkaGateway::test();
        assert!(build(&kgw, &Names::of(&kgw).unwrap()).unwrap().is_none());
    }

    #[test]
    fn selects_the_headless_service_admin_port() {
        let mut kgw = KafkaGateway::test().with_service_monitor();
        kgw.spec.metrics.scrape_interval = Some("15s".into());
        let names = Names::of(&kgw).unwrap();
        let sm = build(&kgw, &names).unwrap().unwrap();
        let value = serde_json::to_value(&sm).unwrap();
        assert_eq!(value["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(value["kind"], "ServiceMonitor");
        assert_eq!(value["metadata"]["namespace"], "testns");
        assert_eq!(
            value["spec"]["selector"]["matchLabels"][SERVICE_ROLE_LABEL],
            "peers"
        );
        assert_eq!(
            value["spec"]["endpoints"][0],
            json!({"port": "admin", "path": "/metrics", "interval": "15s"})
        );
    }
}
