//! The two Services: headless (stable per-pod DNS for raft peers and advertised names) and client
//! (the bootstrap address).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, Names, SERVICE_ROLE_LABEL};
use crate::crd::KafkaGateway;
use crate::Result;

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The headless Service: publishes not-ready pods too, so peers resolve each other while the raft
/// cluster forms (a pod is ready only after it joined).
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn headless(kgw: &KafkaGateway, names: &Names) -> Result<Service> {
    let mut metadata = child_meta(kgw, names, names.headless())?;
    metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(SERVICE_ROLE_LABEL.into(), "peers".into());
    let spec = &kgw.spec;
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector_labels()),
            ports: Some(vec![
                port("kafka", spec.listener.port),
                port("cluster", spec.listener.cluster_port),
                port("admin", spec.metrics.port),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The client Service: Kafka clients bootstrap here, then talk to the advertised pod addresses.
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn client(kgw: &KafkaGateway, names: &Names) -> Result<Service> {
    let mut metadata = child_meta(kgw, names, names.name.clone())?;
    metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(SERVICE_ROLE_LABEL.into(), "bootstrap".into());
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names.selector_labels()),
            ports: Some(vec![port("kafka", kgw.spec.listener.port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;

    #[test]
    fn headless_service_publishes_not_ready_pods_on_all_ports() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        let svc = headless(&kgw, &names).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("kgw-headless"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(names.selector_labels()));
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port))
            .collect();
        assert_eq!(
            ports,
            [
                ("kafka".into(), 9092),
                ("cluster".into(), 9645),
                ("admin".into(), 9644)
            ]
        );
        assert_eq!(svc.metadata.labels.unwrap()[SERVICE_ROLE_LABEL], "peers");
    }

    #[test]
    fn client_service_exposes_kafka_only() {
        let mut kgw = KafkaGateway::test();
        kgw.spec.listener.port = 19092;
        let names = Names::of(&kgw).unwrap();
        let svc = client(&kgw, &names).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("kgw"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip, None);
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 19092);
        assert_eq!(ports[0].target_port, Some(IntOrString::String("kafka".into())));
    }
}
