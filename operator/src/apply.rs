//! The apply path of one reconcile.
//!
//! 1. read the StatefulSet; check the spec ([`crate::validate`]): a spec Kubernetes would refuse
//!    changes no child and is reported (`Ready=False/InvalidSpec`, a Warning event per field);
//! 2. when shrinking, remove the departing raft members (highest ordinal first) through the
//!    gateway admin API, presenting the admin token from the tokens Secret; a failed removal
//!    keeps the StatefulSet at the smallest size whose members are all removed and is reported as
//!    `ScaleDownBlocked`, but does not stop the rest;
//! 3. server-side apply the children under [`FIELD_MANAGER`]: a dry run of the StatefulSet first,
//!    then the tokens Secret (created once when the operator generates it, checked when the user
//!    names it), ConfigMap, headless and client Services, NetworkPolicy (deleted when turned
//!    off), StatefulSet, PDB, ServiceMonitor (when enabled and its CRD exists; deleted when turned
//!    off); a child the API server refuses is reported as `Ready=False/ChildRejected`, an unusable
//!    tokens Secret as `Ready=False/TokensSecretInvalid`;
//! 4. reconcile topics in SeaweedMQ (one Event per topic change);
//! 5. write the status computed from all of the above.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Resource;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::controller::{patch_status, Context, FIELD_MANAGER, RESYNC, RESYNC_PROGRESSING};
use crate::crd::{KafkaGateway, TopicStatus};
use crate::members::MemberError;
use crate::resources::{self, servicemonitor, statefulset, tokens, Names};
use crate::status::{self, kind, Observed, Refusal};
use crate::topics::{self, TopicAction};
use crate::validate;
use crate::{Error, Result};

/// Server-side apply of one child; `what` names it in the log and in a rejection.
async fn ssa<K>(api: &Api<K>, name: &str, object: &K, what: &'static str) -> Result<K>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| rejection(e, what))?;
    debug!(child = what, name, "applied");
    Ok(applied)
}

/// A server-side dry run of [`ssa`]: the API server validates (and admits) `object` without
/// storing it.
async fn dry_run<K>(api: &Api<K>, name: &str, object: &K, what: &'static str) -> Result<()>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| rejection(e, what))?;
    Ok(())
}

fn rejection(e: kube::Error, child: &'static str) -> Error {
    match e {
        kube::Error::Api(status) if status.code == 400 || status.code == 422 => Error::ChildRejected {
            child,
            message: status.message,
        },
        e => Error::Kube(e),
    }
}

/// What applying the children produced, for the status.
struct Applied {
    statefulset: StatefulSet,
    storage_mismatch: Option<String>,
    service_monitor: Option<(bool, &'static str, String)>,
}

/// The apply path (see the module docs).
///
/// # Errors
/// API failures; [`Error::MemberRemoval`] and [`Error::Topics`] after the status is written, so
/// the controller retries them with backoff.
pub(crate) async fn apply(kgw: &KafkaGateway, ctx: &Context) -> Result<Action> {
    let names = Names::of(kgw)?;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let current = sts_api.get_opt(&names.name).await.map_err(Error::Kube)?;
    let invalid = validate::validate(kgw);
    if !invalid.is_empty() {
        return refuse_invalid(kgw, ctx, &names, current.as_ref(), &invalid).await;
    }
    let desired = kgw.spec.replicas;
    let (replicas, blocked) = scale(kgw, ctx, &names, current.as_ref()).await;

    let applied = match apply_children(kgw, ctx, &names, replicas, current.as_ref()).await {
        Ok(applied) => applied,
        Err(Error::ChildRejected { child, message }) => {
            let note = format!("the API server refused the {child}: {message}");
            ctx.publish(
                kgw,
                EventType::Warning,
                "ChildRejected",
                "Apply",
                note.clone(),
                None,
            )
            .await;
            let refusal = Refusal {
                reason: "ChildRejected",
                message: note,
            };
            return refuse(kgw, ctx, &names, current.as_ref(), refusal).await;
        }
        Err(e @ Error::TokensSecret { .. }) => {
            let note = format!("{e}; the gateways need both tokens, so no child was changed");
            ctx.publish(
                kgw,
                EventType::Warning,
                "TokensSecretInvalid",
                "Apply",
                note.clone(),
                Some("spec.security.tokensSecret".into()),
            )
            .await;
            let refusal = Refusal {
                reason: "TokensSecretInvalid",
                message: note,
            };
            return refuse(kgw, ctx, &names, current.as_ref(), refusal).await;
        }
        Err(e) => return Err(e),
    };
    if current.is_none() {
        let note = format!("created StatefulSet {} with {replicas} pods", names.name);
        ctx.publish(kgw, EventType::Normal, "Created", "Create", note, None)
            .await;
    }

    let outcome = reconcile_topics(kgw, ctx).await;
    let observed = Observed {
        statefulset: Some(&applied.statefulset),
        topics: outcome.statuses,
        scale_down_error: blocked
            .as_ref()
            .map(|(node_id, source)| blocked_message(*node_id, source, replicas, desired)),
        storage_mismatch: applied.storage_mismatch,
        service_monitor: applied.service_monitor,
        refusal: None,
    };
    let new_status = status::compute(kgw, &names, observed, k8s_openapi::jiff::Timestamp::now());
    let all_ready = new_status.ready_replicas >= desired;
    patch_status(ctx, &names, new_status).await?;
    if let Some((node_id, source)) = blocked {
        return Err(Error::MemberRemoval { node_id, source });
    }
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

/// The replica count to apply, and the member removal that failed if a scale-down is blocked.
async fn scale(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
    current: Option<&StatefulSet>,
) -> (i32, Option<(i32, MemberError)>) {
    let desired = kgw.spec.replicas;
    let Some(current_replicas) = current.map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
    else {
        return (desired, None);
    };
    if current_replicas > desired {
        if let Err((node_id, source)) = scale_down_members(kgw, ctx, names, current_replicas).await {
            // Members above `node_id` are removed: their pods may go, the rest must stay.
            return (node_id + 1, Some((node_id, source)));
        }
    } else if current_replicas < desired {
        let note =
            format!("scaling from {current_replicas} to {desired} pods; new pods join the raft cluster");
        ctx.publish(kgw, EventType::Normal, "ScalingUp", "Scale", note, None)
            .await;
    }
    (desired, None)
}

/// A spec that fails [`validate::validate`]: one Warning event per field, then the refusal.
async fn refuse_invalid(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
    current: Option<&StatefulSet>,
    invalid: &[validate::FieldError],
) -> Result<Action> {
    for field in invalid {
        let note = format!("{field}; no child was changed");
        ctx.publish(
            kgw,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            note,
            Some(field.field.clone()),
        )
        .await;
    }
    let message = invalid
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let refusal = Refusal {
        reason: "InvalidSpec",
        message,
    };
    refuse(kgw, ctx, names, current, refusal).await
}

fn blocked_message(node_id: i32, source: &MemberError, replicas: i32, desired: i32) -> String {
    format!(
        "removing raft member {node_id} failed: {source}; the StatefulSet keeps {replicas} pods instead of \
         {desired} until the removal succeeds (retried with backoff); other changes were applied"
    )
}

/// Reports a spec that was not (fully) applied: the status says why, nothing is retried until
/// the spec changes (or the periodic resync).
async fn refuse(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
    current: Option<&StatefulSet>,
    refusal: Refusal,
) -> Result<Action> {
    warn!(name = %names.name, reason = refusal.reason, message = %refusal.message, "spec not applied");
    let observed = Observed {
        statefulset: current,
        topics: current_topics(kgw),
        refusal: Some(refusal),
        ..Observed::default()
    };
    let new_status = status::compute(kgw, names, observed, k8s_openapi::jiff::Timestamp::now());
    patch_status(ctx, names, new_status).await?;
    Ok(Action::requeue(RESYNC))
}

async fn apply_children(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
    replicas: i32,
    current: Option<&StatefulSet>,
) -> Result<Applied> {
    let client = ctx.client.clone();
    let ns = names.namespace.as_str();
    let mut sts = statefulset::build(kgw, names, replicas)?;
    let storage_mismatch = keep_immutable_claims(&mut sts, current);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    // The StatefulSet carries most of what the user writes (env, resources, placement): the API
    // server judges it in a dry run before any child changes, so a refusal leaves none half-done.
    dry_run(&sts_api, &names.name, &sts, "StatefulSet").await?;
    // Before the ConfigMap, which names the token files: an unusable tokens Secret changes no
    // child (a pod restarting on a config naming files it has no volume for would not start).
    ensure_tokens(kgw, ctx, names).await?;
    let cm = resources::configmap::build(kgw, names, replicas)?;
    ssa(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &names.config(),
        &cm,
        "ConfigMap",
    )
    .await?;
    let svc_api = Api::<Service>::namespaced(client.clone(), ns);
    let headless = resources::service::headless(kgw, names)?;
    ssa(&svc_api, &names.headless(), &headless, "headless Service").await?;
    let bootstrap = resources::service::client(kgw, names)?;
    ssa(&svc_api, &names.name, &bootstrap, "client Service").await?;
    let netpol_api = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    match resources::networkpolicy::build(kgw, names, &ctx.operator)? {
        Some(policy) => {
            ssa(&netpol_api, &names.name, &policy, "NetworkPolicy").await?;
        }
        None => delete_if_present(&netpol_api, &names.name).await?,
    }
    let statefulset = ssa(&sts_api, &names.name, &sts, "StatefulSet").await?;
    let pdb_api = Api::<PodDisruptionBudget>::namespaced(client, ns);
    match resources::pdb::build(kgw, names)? {
        Some(pdb) => {
            ssa(&pdb_api, &names.name, &pdb, "PodDisruptionBudget").await?;
        }
        None => delete_if_present(&pdb_api, &names.name).await?,
    }
    let service_monitor = service_monitor(kgw, ctx, names).await?;
    Ok(Applied {
        statefulset,
        storage_mismatch,
        service_monitor,
    })
}

/// Makes sure the tokens Secret exists and holds usable tokens: a generated one is created when
/// absent (never rewritten), a user-named one must exist.
///
/// # Errors
/// [`Error::TokensSecret`] for a missing user Secret or unusable tokens; API failures.
async fn ensure_tokens(kgw: &KafkaGateway, ctx: &Context, names: &Names) -> Result<()> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &names.namespace);
    let name = tokens::secret_name(kgw, names);
    let invalid = |reason: String| Error::TokensSecret {
        name: name.clone(),
        reason,
    };
    match api.get_opt(&name).await.map_err(Error::Kube)? {
        Some(secret) => tokens::admin_token(&secret).map(|_| ()).map_err(invalid),
        None if tokens::generated(kgw) => {
            match api.create(&PostParams::default(), &tokens::generate(kgw, names)?).await {
                Ok(_) => {
                    info!(name = %names.name, secret = %name, "tokens secret generated");
                    Ok(())
                }
                // Created concurrently (another reconcile): the next one reads it.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                Err(e) => Err(rejection(e, "tokens Secret")),
            }
        }
        None => Err(invalid(
            "it does not exist; create it with the keys cluster-token and admin-token, or remove              spec.security.tokensSecret to have the operator generate one"
                .into(),
        )),
    }
}

/// The admin token the gateways require, from the tokens Secret; `None` when it cannot be read
/// (a cluster made before the tokens existed: its gateways require none).
async fn admin_token(kgw: &KafkaGateway, ctx: &Context, names: &Names) -> Option<String> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &names.namespace);
    let name = tokens::secret_name(kgw, names);
    match api.get_opt(&name).await {
        Ok(Some(secret)) => match tokens::admin_token(&secret) {
            Ok(token) => Some(token),
            Err(reason) => {
                warn!(name = %names.name, secret = %name, reason, "tokens secret unusable; removing members without the admin token");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            warn!(name = %names.name, secret = %name, error = %e, "tokens secret unreadable; removing members without the admin token");
            None
        }
    }
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Applies the ServiceMonitor when requested and its CRD exists; deletes the one this operator
/// made (the status says so) once it is turned off. The result is the `ServiceMonitorReady`
/// condition, `None` while none is requested.
async fn service_monitor(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
) -> Result<Option<(bool, &'static str, String)>> {
    let client = ctx.client.clone();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &names.namespace, &servicemonitor::api_resource());
    let Some(monitor) = servicemonitor::build(kgw, names)? else {
        let made_one = kgw.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == kind::SERVICE_MONITOR_READY && c.status == "True")
        });
        if made_one {
            delete_if_present(&api, &names.name).await?;
            info!(name = %names.name, "servicemonitor deleted (metrics.serviceMonitor is off)");
        }
        return Ok(None);
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    if crds
        .get_opt(servicemonitor::CRD_NAME)
        .await
        .map_err(Error::Kube)?
        .is_none()
    {
        let message = format!(
            "metrics.serviceMonitor is on but the {} CRD is not installed (install the Prometheus Operator, or \
             turn it off and scrape with examples/prometheus-scrape.yaml)",
            servicemonitor::CRD_NAME
        );
        return Ok(Some((false, "CRDMissing", message)));
    }
    ssa(&api, &names.name, &monitor, "ServiceMonitor").await?;
    let message = format!("ServiceMonitor {} scrapes /metrics on port admin", names.name);
    Ok(Some((true, "Applied", message)))
}

/// Removes members `desired..current` (highest first) before the StatefulSet shrinks, so the
/// remaining pods keep a raft majority of the new membership. On failure, returns the member
/// that could not be removed (those above it are gone).
async fn scale_down_members(
    kgw: &KafkaGateway,
    ctx: &Context,
    names: &Names,
    current_replicas: i32,
) -> std::result::Result<(), (i32, MemberError)> {
    let desired = kgw.spec.replicas;
    // Ordinal 0 never departs (replicas >= 1); the gateway forwards the change to the leader.
    let admin = format!("http://{}:{}", names.pod_host(0), kgw.spec.metrics.port);
    let token = admin_token(kgw, ctx, names).await;
    for node_id in (desired..current_replicas).rev() {
        if let Err(source) = ctx.members.remove(&admin, token.as_deref(), node_id).await {
            let note = format!("removing raft member {node_id} failed: {source}; the StatefulSet keeps it");
            ctx.publish(
                kgw,
                EventType::Warning,
                "MemberRemovalFailed",
                "Scale",
                note,
                None,
            )
            .await;
            return Err((node_id, source));
        }
        info!(name = %names.name, node_id, "raft member removed");
    }
    let note = format!(
        "removed raft members {desired}..{} before scaling {current_replicas} to {desired} pods",
        current_replicas - 1
    );
    ctx.publish(kgw, EventType::Normal, "MembersRemoved", "Scale", note, None)
        .await;
    Ok(())
}

/// `volumeClaimTemplates` cannot change on an existing StatefulSet: when the spec asks for other
/// claims, keep the current ones (instead of failing every apply) and return the difference for
/// the `StorageUpToDate` condition.
fn keep_immutable_claims(desired: &mut StatefulSet, current: Option<&StatefulSet>) -> Option<String> {
    let current = current?;
    let mismatch = statefulset::claim_mismatch(desired, current)?;
    if let Some(spec) = desired.spec.as_mut() {
        spec.volume_claim_templates = current
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone());
    }
    Some(mismatch)
}

fn current_topics(kgw: &KafkaGateway) -> Vec<TopicStatus> {
    kgw.status.as_ref().map(|s| s.topics.clone()).unwrap_or_default()
}

async fn reconcile_topics(kgw: &KafkaGateway, ctx: &Context) -> topics::TopicsOutcome {
    let previous = current_topics(kgw);
    if kgw.spec.topics.is_empty() && previous.is_empty() {
        return topics::TopicsOutcome::default();
    }
    let outcome = match ctx.topics.storage(&kgw.spec.seaweedmq).await {
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
    };
    for action in &outcome.actions {
        let (type_, reason, note) = describe(action);
        let field = format!("spec.topics{{{}}}", action.topic());
        ctx.publish(kgw, type_, reason, "ReconcileTopics", note, Some(field))
            .await;
    }
    outcome
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
            format!("topic {t} has {has} partitions; SeaweedMQ cannot grow it to {asked}"),
        ),
        TopicAction::Deleted(t) => (
            EventType::Normal,
            "TopicDeleted",
            format!("topic {t} deleted (policy Delete)"),
        ),
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "security_tests.rs"]
mod security_tests;
