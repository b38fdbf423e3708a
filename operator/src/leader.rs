//! Leader election on a `coordination.k8s.io/v1` Lease, so only one operator replica reconciles.
//!
//! Writes use the Lease's `resourceVersion` (optimistic concurrency): of two replicas racing for
//! an expired lease, one update wins and the other gets `409 Conflict` and stays a follower.
//! A leader that cannot renew within the lease duration stops leading (the caller shuts down).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What to do with the Lease as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    TakeOver,
    /// Someone else holds a live lease.
    HeldBy(String),
}

/// Decides from the observed Lease, at `now`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(holder) => {
            let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| t.0.saturating_add(duration).is_ok_and(|end| end < now));
            if expired {
                Decision::TakeOver
            } else {
                Decision::HeldBy(holder.to_string())
            }
        }
    }
}

/// Campaigns for and keeps one Lease.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElector {
    /// An elector for Lease `namespace/name` as `identity` (the pod name).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, previous: Option<&LeaseSpec>, takeover: bool) -> LeaseSpec {
        let mut spec = previous.cloned().unwrap_or_default();
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX));
        spec.renew_time = Some(MicroTime(now));
        if takeover || previous.is_none() {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(previous.is_some()));
        }
        spec
    }

    /// One attempt: true when we hold the lease afterwards.
    ///
    /// # Errors
    /// API errors other than a lost race (`409`), which is a plain `false`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let result = match decide(current.as_ref(), &self.identity, now) {
            Decision::HeldBy(_) => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, true)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            decision @ (Decision::Renew | Decision::TakeOver) => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(self.spec(now, lease.spec.as_ref(), decision == Decision::TakeOver));
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads (or `cancel` fires: returns false).
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        let retry = self.duration / 3;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "leading");
                    return true;
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, error = %e, "lease acquire failed"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// Renews every third of the lease duration until `cancel`; fires `lost` when the lease
    /// was not renewed for a whole duration (another replica may lead by then).
    pub async fn keep(&self, cancel: CancellationToken, lost: CancellationToken) {
        let period = self.duration / 3;
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "lease taken by another replica");
                    lost.cancel();
                    return;
                }
                Err(e) => warn!(lease = %self.name, error = %e, "lease renewal failed"),
            }
            if last_renewal.elapsed() >= self.duration {
                warn!(lease = %self.name, "lease not renewed within its duration");
                lost.cancel();
                return;
            }
        }
    }

    /// Gives the lease up (best effort, on shutdown) so another replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            warn!(lease = %self.name, error = %e, "lease release failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_client, timeout_after_1s, Journal, Reply, Step};
    use http::Method;

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
        }
    }

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/testns/leases";

    fn elector(client: Client) -> LeaderElector {
        LeaderElector::new(client, "testns", "op", "me", Duration::from_secs(15))
    }

    #[tokio::test]
    async fn creates_a_missing_lease_holding_it() {
        let (client, server) = mock_client();
        let steps = vec![
            Step::raw(Method::GET, &format!("{LEASES}/op"), Reply::Status(404)),
            Step::raw(Method::POST, LEASES, Reply::Echo).checked(|b| {
                assert_eq!(b["spec"]["holderIdentity"], "me");
                assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
            }),
        ];
        let mock = server.run(steps, Journal::default());
        assert!(elector(client).try_acquire_or_renew().await.unwrap());
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn a_live_lease_of_another_replica_is_left_alone() {
        let (client, server) = mock_client();
        let live = lease(Some("other"), Timestamp::now().as_second(), 15);
        let steps = vec![Step::raw(
            Method::GET,
            &format!("{LEASES}/op"),
            Reply::Json(serde_json::to_value(live).unwrap()),
        )];
        let mock = server.run(steps, Journal::default());
        assert!(!elector(client).try_acquire_or_renew().await.unwrap());
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn taking_over_an_expired_lease_uses_its_resource_version_and_a_lost_race_is_false() {
        let (client, server) = mock_client();
        let mut expired = lease(Some("other"), 1_000, 15);
        expired.metadata.name = Some("op".into());
        expired.metadata.resource_version = Some("42".into());
        let steps = vec![
            Step::raw(
                Method::GET,
                &format!("{LEASES}/op"),
                Reply::Json(serde_json::to_value(expired).unwrap()),
            ),
            Step::raw(Method::PUT, &format!("{LEASES}/op"), Reply::Status(409)).checked(|b| {
                assert_eq!(b["metadata"]["resourceVersion"], "42");
                assert_eq!(b["spec"]["holderIdentity"], "me");
                assert_eq!(b["spec"]["leaseTransitions"], 1);
            }),
        ];
        let mock = server.run(steps, Journal::default());
        assert!(!elector(client).try_acquire_or_renew().await.unwrap());
        timeout_after_1s(mock).await;
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(
            decide(Some(&lease(Some("a"), 990, 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 990, 15)), "a", now),
            Decision::HeldBy("b".into())
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 980, 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(decide(Some(&lease(None, 999, 15)), "a", now), Decision::TakeOver);
        assert_eq!(
            decide(Some(&lease(Some(""), 999, 15)), "a", now),
            Decision::TakeOver
        );
    }
}
