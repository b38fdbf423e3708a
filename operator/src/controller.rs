//! The reconcile loop of `KafkaGateway`: finalizer handling, error policy, events, the status
//! write and the controller wiring. The apply path itself is in [`crate::apply`].
//!
//! The finalizer exists only for `topicDeletionPolicy: Delete`, the one case with something
//! outside Kubernetes to clean up (topics in SeaweedMQ); children go by owner-reference garbage
//! collection. So deleting a gateway with the default `Retain` policy never waits for the operator
//! (an uninstalled or broken operator cannot block it), and a finalizer left by an earlier
//! operator version is removed while the policy is `Retain`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::crd::{KafkaGateway, TopicDeletionPolicy};
use crate::members::MemberRemover;
use crate::metrics::Metrics;
use crate::resources::networkpolicy::OperatorIdentity;
use crate::resources::Names;
use crate::topics::{self, TopicBackends};
use crate::{Error, Result};

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kafka-gateway-operator";
/// Finalizer guarding topic cleanup.
pub const FINALIZER: &str = "kafkagateway.seaweedfs.io/cleanup";
/// Requeue period of a healthy resource.
pub(crate) const RESYNC: Duration = Duration::from_secs(300);
/// Requeue period while pods are not all ready.
pub(crate) const RESYNC_PROGRESSING: Duration = Duration::from_secs(15);
/// Longest Event note the API server accepts (bytes).
const MAX_NOTE_BYTES: usize = 1024;
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
    /// Where the operator runs (admitted to the gateways' admin port by their NetworkPolicy).
    pub operator: OperatorIdentity,
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
    /// A context; `identity` names this operator replica in Events, `operator` says where it
    /// runs.
    pub fn new(
        client: Client,
        identity: Option<String>,
        metrics: Metrics,
        topics: Arc<dyn TopicBackends>,
        members: Arc<dyn MemberRemover>,
        operator: OperatorIdentity,
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
            operator,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event about `kgw`, or about one of its fields (`field`, e.g.
    /// `spec.topics{orders}`, kubelet's convention for parts of an object). Events about different
    /// fields stay distinct: the recorder folds repeats of the same reason about the same
    /// reference into one series. Best effort: a failed write is logged and never fails the
    /// reconcile (nor blocks a deletion).
    pub(crate) async fn publish(
        &self,
        kgw: &KafkaGateway,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        field: Option<String>,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, MAX_NOTE_BYTES)),
            action: action.into(),
            secondary: None,
        };
        let mut regarding = kgw.object_ref(&());
        regarding.field_path = field;
        if let Err(e) = self.recorder.publish(&event, &regarding).await {
            warn!(name = %kgw.name_any(), reason, error = %e, "event not written");
        }
    }

    fn backoff(&self, key: String) -> Duration {
        let mut failures = self.failures.lock();
        let n = failures.entry(key).or_insert(0);
        let delay = BASE_BACKOFF.saturating_mul(1u32 << (*n).min(10)).min(MAX_BACKOFF);
        *n = n.saturating_add(1);
        delay
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
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
    let has_finalizer = kgw.finalizers().iter().any(|f| f == FINALIZER);
    let wants_finalizer = kgw.spec.topic_deletion_policy == TopicDeletionPolicy::Delete;
    let result = if kgw.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            cleanup(&api, &kgw, &ctx).await
        } else {
            Ok(Action::await_change())
        }
    } else if wants_finalizer && !has_finalizer {
        // Before any topic exists that the cleanup would have to delete; the patch triggers the
        // next reconcile.
        set_finalizer(&api, &kgw, true)
            .await
            .map(|()| Action::await_change())
    } else {
        if has_finalizer && !wants_finalizer {
            set_finalizer(&api, &kgw, false).await?;
        }
        crate::apply::apply(&kgw, &ctx).await
    };
    if result.is_ok() {
        ctx.failures.lock().remove(&key);
    }
    result
}

/// Adds or removes [`FINALIZER`] with a merge patch guarded by the observed `resourceVersion`
/// (a concurrent change of the finalizer list fails with 409 and is retried). Removing it from an
/// object that is already gone is success.
async fn set_finalizer(api: &Api<KafkaGateway>, kgw: &KafkaGateway, present: bool) -> Result<()> {
    let mut finalizers: Vec<String> = kgw
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.into());
    }
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": kgw.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(&kgw.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 && !present => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Requeue after a failure with per-object exponential backoff; counts the failure.
pub fn error_policy(kgw: Arc<KafkaGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error);
    let delay = ctx.backoff(object_key(&kgw));
    warn!(name = %kgw.name_any(), error = %error, reason = error.metric_label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Writes `status` with server-side apply (the operator owns every condition it lists, so a
/// condition left out is removed).
pub(crate) async fn patch_status(
    ctx: &Context,
    names: &Names,
    status: crate::KafkaGatewayStatus,
) -> Result<()> {
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

/// Deletion of a gateway carrying the finalizer: under `Delete` the topics go from SeaweedMQ
/// first, then the finalizer; the Event comes last and best effort, so it can never hold the
/// deletion up.
async fn cleanup(api: &Api<KafkaGateway>, kgw: &KafkaGateway, ctx: &Context) -> Result<Action> {
    let mut deleted = 0;
    if kgw.spec.topic_deletion_policy == TopicDeletionPolicy::Delete && !kgw.spec.topics.is_empty() {
        let storage = ctx
            .topics
            .storage(&kgw.spec.seaweedmq)
            .await
            .map_err(Error::Storage)?;
        deleted = topics::delete_all(storage.as_ref(), &kgw.spec.topics)
            .await
            .map_err(Error::Storage)?;
    }
    set_finalizer(api, kgw, false).await?;
    info!(name = %kgw.name_any(), topics_deleted = deleted, "finalized");
    let (reason, note) = match kgw.spec.topic_deletion_policy {
        TopicDeletionPolicy::Delete => (
            "TopicsDeleted",
            format!("deleted {deleted} topic(s) from SeaweedMQ (topicDeletionPolicy Delete)"),
        ),
        TopicDeletionPolicy::Retain => (
            "TopicsRetained",
            "topics stay in SeaweedMQ (topicDeletionPolicy Retain)".to_string(),
        ),
    };
    ctx.publish(kgw, EventType::Normal, reason, "Delete", note, None)
        .await;
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
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), config.clone())
        .owns(Api::<NetworkPolicy>::all(client), config)
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
