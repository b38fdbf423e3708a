//! The PodDisruptionBudget: voluntary evictions never take a raft majority down.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, Names};
use crate::crd::KafkaGateway;
use crate::Result;

/// Pods that may be down while a majority of `replicas` stays up (at least 1, so drains proceed).
pub fn default_max_unavailable(replicas: i32) -> i32 {
    ((replicas - 1) / 2).max(1)
}

/// The PDB, or `None` when disabled in the spec.
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn build(kgw: &KafkaGateway, names: &Names) -> Result<Option<PodDisruptionBudget>> {
    if !kgw.spec.pdb.enabled {
        return Ok(None);
    }
    let max_unavailable = kgw
        .spec
        .pdb
        .max_unavailable
        .clone()
        .unwrap_or(IntOrString::Int(default_max_unavailable(kgw.spec.replicas)));
    Ok(Some(PodDisruptionBudget {
        metadata: child_meta(kgw, names, names.name.clone())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;

    #[test]
    fn default_keeps_a_majority() {
        for (replicas, expected) in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (7, 3)] {
            assert_eq!(default_max_unavailable(replicas), expected, "replicas {replicas}");
        }
    }

    #[test]
    fn pdb_selects_pods_and_honours_override_and_disable() {
        let kgw = KafkaGateway::test().with_replicas(5);
        let names = Names::of(&kgw).unwrap();
        let pdb = build(&kgw, &names).unwrap().unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(2)));
        assert_eq!(spec.selector.unwrap().match_labels, Some(names.selector_labels()));

        let mut custom = kgw.clone();
        custom.spec.pdb.max_unavailable = Some(IntOrString::String("20%".into()));
        let spec = build(&custom, &names).unwrap().unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::String("20%".into())));

        let mut off = kgw;
        off.spec.pdb.enabled = false;
        assert!(build(&off, &names).unwrap().is_none());
    }
}
