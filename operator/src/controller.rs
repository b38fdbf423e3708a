//! The reconcile loop of `KafkaGateway`.
//!
//! Order of one reconcile (the finalizer is added first, in its own patch):
//! 1. read the StatefulSet; when shrinking, remove the departing raft members (highest ordinal
//!    first) through the gateway admin API, and stop with `Degraded` if one fails;
//! 2. server-side apply the children under [`FIELD_MANAGER`]: ConfigMap, headless and client
//!    Services, StatefulSet, PDB, ServiceMonitor (when enabled and its CRD exists);
//! 3. reconcile topics in SeaweedMQ;
//! 4. write the status computed from the applied StatefulSet and the topic results.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{info, warn};

use crate::crd::{KafkaGateway, TopicDeletionPolicy};
use crate::members::MemberRemover;
use crate::metrics::Metrics;
use crate::resources::{self, Names};
use crate::status::{self, Observed};
use crate::topics::{self, TopicAction, TopicBackends};
use crate::{Error, Result};

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kafka-gateway-operator";
/// Finalizer guarding topic cleanup.
pub const FINALIZER: &str = "kafkagateway.seaweedfs.io/cleanup";
/// Requeue period of a healthy resource.
const RESYNC: Duration = Duration::from_secs(300);
/// Requeue period while pods are not all ready.
const RESYNC_PROGRESSING: Duration = Duration::from_secs(15);
/// First error backoff; doubles per consecutive failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Everything a reconcile needs.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Metrics,
    /// SeaweedMQ storage handles for topics.
    pub topics: Arc<dyn TopicBackends>,
    /// Raft member removal.
    pub members: Arc<dyn MemberRemover>,
    /// Consecutive failures per object (`ns/name`), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context; `identity` names this operator replica in Events.
    pub fn new(
        client: Client,
        identity: Option<String>,
        metrics: Metrics,
        topics: Arc<dyn TopicBackends>,
        members: Arc<dyn MemberRemover>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: identity,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            topics,
            members,
            failures: Mutex::new(HashMap::new()),
        }
    }

    async fn publish(
        &self,
        kgw: &KafkaGateway,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<()> {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &kgw.object_ref(&()))
            .await
            .map_err(Error::Kube)
    }

    fn backoff(&self, key: String) -> Duration {
        let mut failures = self.failures.lock();
        let n = failures.entry(key).or_insert(0);
        let delay = BASE_BACKOFF.saturating_mul(1u32 << (*n).min(10)).min(MAX_BACKOFF);
        *n = n.saturating_add(1);
        delay
    }
}

fn object_key(kgw: &KafkaGateway) -> String {
    format!("{}/{}", kgw.namespace().unwrap_or_default(), kgw.name_any())
}

/// Reconciles one `KafkaGateway` (entry point of the controller).
///
/// # Errors
/// Any failed step; the controller requeues through [`error_policy`].
pub async fn reconcile(kgw: Arc<KafkaGateway>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start_reconcile();
    let ns = kgw
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<KafkaGateway> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(&kgw);
    let result = finalizer(&api, FINALIZER, kgw, |event| async {
        match event {
            Finalizer::Apply(kgw) => apply(&kgw, &ctx).await,
            Finalizer::Cleanup(kgw) => cleanup(&kgw, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.failures.lock().remove(&key);
    }
    result
}

/// Requeue after a failure with per-object exponential backoff; counts the failure.
pub fn error_policy(kgw: Arc<KafkaGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error);
    let delay = ctx.backoff(object_key(&kgw));
    warn!(name = %kgw.name_any(), error = %error, reason = error.metric_label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Server-side apply of one child; `what` names it in the log.
async fn ssa<K>(api: &Api<K>, name: &str, object: &K, what: &'static str) -> Result<K>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(Error::Kube)?;
    tracing::debug!(child = what, name, "applied");
    Ok(applied)
}

async fn apply(kgw: &KafkaGateway, ctx: &Context) -> Result<Action> {
    let names = Names::of(kgw)?;
    let client = ctx.client.clone();
    let ns = names.namespace.as_str();
    let desired = kgw.spec.replicas;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let current = sts_api.get_opt(&names.name).await.map_err(Error::Kube)?;
    let current_replicas = current
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);

    if current.is_some() && current_replicas > desired {
        scale_down_members(kgw, ctx, &names, current.as_ref(), current_replicas).await?;
    } else if current.is_some() && current_replicas < desired {
        let note =
            format!("scaling from {current_replicas} to {desired} pods; new pods join the raft cluster");
        ctx.publish(kgw, EventType::Normal, "ScalingUp", "Scale", note)
            .await?;
    }

    let cm = resources::configmap::build(kgw, &names, desired)?;
    ssa(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &names.config(),
        &cm,
        "configmap",
    )
    .await?;
    let svc_api = Api::<Service>::namespaced(client.clone(), ns);
    ssa(
        &svc_api,
        &names.headless(),
        &resources::service::headless(kgw, &names)?,
        "headless service",
    )
    .await?;
    ssa(
        &svc_api,
        &names.name,
        &resources::service::client(kgw, &names)?,
        "client service",
    )
    .await?;
    let mut sts = resources::statefulset::build(kgw, &names, desired)?;
    keep_immutable_claims(&mut sts, current.as_ref(), &names);
    let applied = ssa(&sts_api, &names.name, &sts, "statefulset").await?;
    if current.is_none() {
        let note = format!("created StatefulSet {} with {desired} pods", names.name);
        ctx.publish(kgw, EventType::Normal, "Created", "Create", note)
            .await?;
    }
    let pdb_api = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    match resources::pdb::build(kgw, &names)? {
        Some(pdb) => {
            ssa(&pdb_api, &names.name, &pdb, "pdb").await?;
        }
        None => match pdb_api.delete(&names.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        },
    }
    if let Some(monitor) = resources::servicemonitor::build(kgw, &names)? {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds
            .get_opt(resources::servicemonitor::CRD_NAME)
            .await
            .map_err(Error::Kube)?
            .is_some()
        {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &resources::servicemonitor::api_resource());
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(&names.name, &params, &Patch::Apply(&monitor))
                .await
                .map_err(Error::Kube)?;
        } else {
            warn!(name = %names.name, "servicemonitor requested but its CRD is not installed; skipped");
        }
    }

    let previous = kgw.status.as_ref().map(|s| s.topics.clone()).unwrap_or_default();
    let outcome = if kgw.spec.topics.is_empty() && previous.is_empty() {
        topics::TopicsOutcome::default()
    } else {
        match ctx.topics.storage(&kgw.spec.seaweedmq).await {
            Ok(storage) => {
                topics::reconcile(
                    storage.as_ref(),
                    &kgw.spec.topics,
                    kgw.spec.topic_deletion_policy,
                    &previous,
                )
                .await
            }
            Err(e) => topics::unreachable(&kgw.spec.topics, &e),
        }
    };
    for action in &outcome.actions {
        let (type_, reason, note) = describe(action);
        ctx.publish(kgw, type_, reason, "ReconcileTopics", note).await?;
    }

    let observed = Observed {
        statefulset: Some(&applied),
        topics: outcome.statuses,
        scale_down_error: None,
    };
    let new_status = status::compute(kgw, &names, observed, k8s_openapi::jiff::Timestamp::now());
    let all_ready = new_status.ready_replicas >= desired;
    patch_status(ctx, &names, new_status).await?;
    if outcome.failed > 0 {
        return Err(Error::Topics {
            failed: outcome.failed,
        });
    }
    Ok(Action::requeue(if all_ready {
        RESYNC
    } else {
        RESYNC_PROGRESSING
    }))
}

/// Removes members `desired..current` (highest first) before the StatefulSet shrinks, so the
/// remaining pods keep a raft majority of the new membership.
async fn scale_down_members(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
    current: Option<&StatefulSet>,
    current_replicas: i32,
) -> Result<()> {
    let desired = kgw.spec.replicas;
    // Ordinal 0 never departs (replicas >= 1); the gateway forwards the change to the leader.
    let admin = format!("http://{}:{}", names.pod_host(0), kgw.spec.metrics.port);
    for node_id in (desired..current_replicas).rev() {
        if let Err(source) = ctx.members.remove(&admin, node_id).await {
            let note =
                format!("removing raft member {node_id} failed: {source}; not shrinking the StatefulSet");
            ctx.publish(
                kgw,
                EventType::Warning,
                "MemberRemovalFailed",
                "Scale",
                note.clone(),
            )
            .await?;
            let observed = Observed {
                statefulset: current,
                topics: current_topics(kgw),
                scale_down_error: Some(note),
            };
            let new_status = status::compute(kgw, names, observed, k8s_openapi::jiff::Timestamp::now());
            patch_status(ctx, names, new_status).await?;
            return Err(Error::MemberRemoval { node_id, source });
        }
        info!(name = %names.name, node_id, "raft member removed");
    }
    let note = format!(
        "removed raft members {desired}..{} before scaling {current_replicas} to {desired} pods",
        current_replicas - 1
    );
    ctx.publish(kgw, EventType::Normal, "MembersRemoved", "Scale", note)
        .await
}

/// `volumeClaimTemplates` cannot change on an existing StatefulSet: keep the current ones (a
/// storage change applies to new clusters only) instead of failing every apply.
fn keep_immutable_claims(desired: &mut StatefulSet, current: Option<&StatefulSet>, names: &Names) {
    let Some(current_claims) = current
        .and_then(|c| c.spec.as_ref())
        .map(|s| s.volume_claim_templates.clone())
    else {
        return;
    };
    if let Some(spec) = desired.spec.as_mut() {
        if spec.volume_claim_templates != current_claims {
            warn!(name = %names.name, "storage settings differ from the existing volume claims; keeping the existing ones");
            spec.volume_claim_templates = current_claims;
        }
    }
}

fn current_topics(kgw: &KafkaGateway) -> Vec<crate::crd::TopicStatus> {
    kgw.status.as_ref().map(|s| s.topics.clone()).unwrap_or_default()
}

fn describe(action: &TopicAction) -> (EventType, &'static str, String) {
    match action {
        TopicAction::Created(t, p) => (
            EventType::Normal,
            "TopicCreated",
            format!("topic {t} created with {p} partitions"),
        ),
        TopicAction::PartitionsIncreased(t, from, to) => (
            EventType::Normal,
            "TopicPartitionsIncreased",
            format!("topic {t} grew from {from} to {to} partitions"),
        ),
        TopicAction::ConfigUpdated(t) => (
            EventType::Normal,
            "TopicConfigUpdated",
            format!("topic {t} config updated"),
        ),
        TopicAction::DecreaseRefused(t, has, asked) => (
            EventType::Warning,
            "TopicPartitionDecreaseRefused",
            format!("topic {t} has {has} partitions; decreasing to {asked} is refused"),
        ),
        TopicAction::IncreaseRefused(t, has, asked) => (
            EventType::Warning,
            "TopicPartitionIncreaseRefused",
            format!("topic {t} has {has} partitions; the storage refused growing to {asked}"),
        ),
        TopicAction::Deleted(t) => (
            EventType::Normal,
            "TopicDeleted",
            format!("topic {t} deleted (policy Delete)"),
        ),
    }
}

async fn patch_status(ctx: &Context, names: &Names, status: crate::KafkaGatewayStatus) -> Result<()> {
    let api: Api<KafkaGateway> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let patch = serde_json::json!({
        "apiVersion": KafkaGateway::api_version(&()),
        "kind": KafkaGateway::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&names.name, &params, &Patch::Apply(&patch))
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

/// Deletion: children go through owner-reference garbage collection; topics are deleted from
/// SeaweedMQ only under the `Delete` policy.
async fn cleanup(kgw: &KafkaGateway, ctx: &Context) -> Result<Action> {
    if kgw.spec.topic_deletion_policy == TopicDeletionPolicy::Delete && !kgw.spec.topics.is_empty() {
        let storage = ctx
            .topics
            .storage(&kgw.spec.seaweedmq)
            .await
            .map_err(Error::Storage)?;
        let deleted = topics::delete_all(storage.as_ref(), &kgw.spec.topics)
            .await
            .map_err(Error::Storage)?;
        info!(name = %kgw.name_any(), deleted, "topics deleted");
    }
    let note = format!(
        "deleting; topics {}",
        match kgw.spec.topic_deletion_policy {
            TopicDeletionPolicy::Retain => "retained in SeaweedMQ",
            TopicDeletionPolicy::Delete => "deleted from SeaweedMQ",
        }
    );
    ctx.publish(kgw, EventType::Normal, "Deleting", "Delete", note)
        .await?;
    Ok(Action::await_change())
}

/// Checks that the CRD is installed (the API answers a list).
///
/// # Errors
/// The API error when the resource cannot be listed.
pub async fn check_crd(client: &Client) -> Result<(), kube::Error> {
    Api::<KafkaGateway>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .map(|_| ())
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let config = watcher::Config::default();
    Controller::new(Api::<KafkaGateway>::all(client.clone()), config.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), config.clone())
        .owns(Api::<Service>::all(client.clone()), config.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), config.clone())
        .owns(Api::<PodDisruptionBudget>::all(client), config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "controller event"),
            }
        })
        .await;
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
