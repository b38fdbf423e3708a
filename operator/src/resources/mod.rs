//! Pure builders: a `KafkaGateway` (plus the replica count to run) in, child objects out.
//! Nothing here talks to the API server; the controller applies the results.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{AdvertisedAddress, KafkaGateway};
use crate::{Error, Result};

pub mod configmap;
pub mod networkpolicy;
pub mod pdb;
pub mod service;
pub mod servicemonitor;
pub mod statefulset;
pub mod tokens;

/// Where the raft data volume is mounted.
pub const DATA_DIR: &str = "/var/lib/kafka-gateway";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/kafka-gateway";
/// File name of the gateway config inside the ConfigMap.
pub const CONFIG_FILE: &str = "gateway.toml";
/// Pod template annotation carrying the hash of the pod-restarting part of the config.
pub const CONFIG_HASH_ANNOTATION: &str = "kafkagateway.seaweedfs.io/config-hash";
/// Label marking the headless (per-pod) Service, which the ServiceMonitor selects.
pub const SERVICE_ROLE_LABEL: &str = "kafkagateway.seaweedfs.io/service";

/// Identity of one `KafkaGateway`: the names of its children and their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Resource name (also the StatefulSet, client Service, PDB and ServiceMonitor name).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Cluster DNS domain.
    pub domain: String,
}

impl Names {
    /// Names of `kgw`'s children.
    ///
    /// # Errors
    /// [`Error::MissingObjectKey`] when the object has no name or namespace.
    pub fn of(kgw: &KafkaGateway) -> Result<Self> {
        let name = kgw
            .metadata
            .name
            .clone()
            .ok_or(Error::MissingObjectKey(".metadata.name"))?;
        let namespace = kgw
            .namespace()
            .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
        Ok(Self {
            name,
            namespace,
            domain: kgw.spec.cluster_domain.clone(),
        })
    }

    /// The headless Service giving each pod a stable DNS name.
    pub fn headless(&self) -> String {
        format!("{}-headless", self.name)
    }

    /// The ConfigMap holding the gateway config.
    pub fn config(&self) -> String {
        format!("{}-config", self.name)
    }

    /// Stable DNS name of the pod with `ordinal`.
    pub fn pod_host(&self, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc.{}",
            self.name,
            self.headless(),
            self.namespace,
            self.domain
        )
    }

    /// The bootstrap address clients use (the client Service).
    pub fn bootstrap(&self, port: i32) -> String {
        format!("{}.{}.svc.{}:{port}", self.name, self.namespace, self.domain)
    }

    /// Labels selecting this gateway's pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "kafka-gateway".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.name.clone()),
        ])
    }

    /// The selector as a label-selector string (the scale subresource's `status.selector`).
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Labels of every child object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/component".into(), "gateway".into());
        labels.insert(
            "app.kubernetes.io/managed-by".into(),
            "kafka-gateway-operator".into(),
        );
        labels
    }
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
pub(crate) fn child_meta(kgw: &KafkaGateway, names: &Names, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels()),
        owner_references: Some(vec![owner_ref(kgw)?]),
        ..ObjectMeta::default()
    })
}

/// The controller owner reference pointing at `kgw` (garbage collection and `.owns()` watches).
/// `blockOwnerDeletion`: a foreground deletion of the gateway waits for its children.
///
/// # Errors
/// [`Error::MissingObjectKey`] when `kgw` has no uid (it was never stored).
pub fn owner_ref(kgw: &KafkaGateway) -> Result<OwnerReference> {
    let owner = kgw
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey(".metadata.uid"))?;
    Ok(OwnerReference {
        block_owner_deletion: Some(true),
        ..owner
    })
}

/// The address pod `$(POD_NAME)` advertises, with Kubernetes `$(VAR)` expansion.
pub fn advertised_listener(kgw: &KafkaGateway, names: &Names) -> String {
    let port = kgw.spec.listener.port;
    match kgw.spec.listener.advertised_address {
        AdvertisedAddress::PodIP => format!("$(POD_IP):{port}"),
        AdvertisedAddress::PodDNS => {
            format!(
                "$(POD_NAME).{}.{}.svc.{}:{port}",
                names.headless(),
                names.namespace,
                names.domain
            )
        }
    }
}

/// The initial raft peers of a cluster of `replicas` pods: `id=host:clusterPort,...`.
pub fn peers(kgw: &KafkaGateway, names: &Names, replicas: i32) -> String {
    (0..replicas)
        .map(|id| format!("{id}={}:{}", names.pod_host(id), kgw.spec.listener.cluster_port))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;

    #[test]
    fn names_and_addresses() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        assert_eq!(names.headless(), "kgw-headless");
        assert_eq!(names.pod_host(2), "kgw-2.kgw-headless.testns.svc.cluster.local");
        assert_eq!(names.bootstrap(9092), "kgw.testns.svc.cluster.local:9092");
        assert_eq!(
            names.selector_string(),
            "app.kubernetes.io/instance=kgw,app.kubernetes.io/name=kafka-gateway"
        );
        assert_eq!(
            peers(&kgw, &names, 2),
            "0=kgw-0.kgw-headless.testns.svc.cluster.local:9645,1=kgw-1.kgw-headless.testns.svc.cluster.local:9645"
        );
    }

    #[test]
    fn advertised_listener_by_mode() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        assert_eq!(advertised_listener(&kgw, &names), "$(POD_IP):9092");
        let kgw = KafkaGateway::test().with_pod_dns();
        assert_eq!(
            advertised_listener(&kgw, &names),
            "$(POD_NAME).kgw-headless.testns.svc.cluster.local:9092"
        );
    }

    #[test]
    fn children_are_owned_by_the_gateway_and_block_its_deletion() {
        let kgw = KafkaGateway::test();
        let owner = owner_ref(&kgw).unwrap();
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("KafkaGateway", "kgw", Some(true), Some(true))
        );
    }

    #[test]
    fn missing_keys_are_errors() {
        let mut kgw = KafkaGateway::test();
        kgw.metadata.namespace = None;
        assert!(matches!(Names::of(&kgw), Err(Error::MissingObjectKey(_))));
        let mut kgw = KafkaGateway::test();
        kgw.metadata.uid = None;
        assert!(matches!(owner_ref(&kgw), Err(Error::MissingObjectKey(_))));
    }
}
