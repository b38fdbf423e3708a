//! `kafka-gateway-operator delete-gateway`: the chart's pre-delete hook.
//!
//! `helm uninstall` deletes the operator's Deployment, ServiceAccount and RBAC before custom
//! resources (Helm deletes kinds it does not know last). A KafkaGateway created by the release
//! whose finalizer needs the operator (`topicDeletionPolicy: Delete`) would then wait for an
//! operator that is gone. The hook runs first, while the operator still runs: it deletes the
//! release's KafkaGateway and waits until it is gone, so the operator finalizes it normally.

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use tracing::info;

use crate::crd::KafkaGateway;
use crate::{Error, Result};

/// Deletes KafkaGateway `name` (absent is fine) and waits until it is gone, polling every `poll`.
///
/// # Errors
/// [`Error::Kube`] on API failures; [`Error::StillPresent`] when it still exists after `timeout`
/// (its finalizer was not removed: is the operator running?).
pub async fn delete_gateway(
    api: &Api<KafkaGateway>,
    name: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<()> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => info!(name, "kafkagateway deletion requested"),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            info!(name, "kafkagateway already gone");
            return Ok(());
        }
        Err(e) => return Err(Error::Kube(e)),
    }
    let start = tokio::time::Instant::now();
    loop {
        if api.get_opt(name).await.map_err(Error::Kube)?.is_none() {
            info!(
                name,
                waited_ms = start.elapsed().as_millis(),
                "kafkagateway deleted"
            );
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::StillPresent {
                name: name.to_string(),
                waited: timeout,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_client, timeout_after_1s, Journal, KafkaGatewayExt, Reply, Step};
    use http::Method;

    const KGW: &str = "/apis/kafkagateway.seaweedfs.io/v1alpha1/namespaces/testns/kafkagateways/kgw";

    fn present() -> Reply {
        Reply::Json(serde_json::to_value(KafkaGateway::test().deleting()).unwrap())
    }

    #[tokio::test]
    async fn deletes_then_waits_until_the_gateway_is_gone() {
        let (client, server) = mock_client();
        let steps = vec![
            Step::raw(Method::DELETE, KGW, present()),
            Step::raw(Method::GET, KGW, present()),
            Step::raw(Method::GET, KGW, Reply::Status(404)),
        ];
        let mock = server.run(steps, Journal::default());
        let api = Api::namespaced(client, "testns");
        delete_gateway(&api, "kgw", Duration::from_secs(5), Duration::from_millis(1))
            .await
            .expect("gone");
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn an_absent_gateway_is_success_and_a_stuck_one_an_error() {
        let (client, server) = mock_client();
        let mock = server.run(
            vec![Step::raw(Method::DELETE, KGW, Reply::Status(404))],
            Journal::default(),
        );
        let api = Api::namespaced(client, "testns");
        delete_gateway(&api, "kgw", Duration::ZERO, Duration::ZERO)
            .await
            .expect("absent");
        timeout_after_1s(mock).await;

        let (client, server) = mock_client();
        let steps = vec![
            Step::raw(Method::DELETE, KGW, present()),
            Step::raw(Method::GET, KGW, present()),
        ];
        let mock = server.run(steps, Journal::default());
        let api = Api::namespaced(client, "testns");
        let err = delete_gateway(&api, "kgw", Duration::ZERO, Duration::ZERO)
            .await
            .expect_err("finalizer never removed");
        timeout_after_1s(mock).await;
        assert!(err.to_string().contains("is the operator running"), "{err}");
    }
}
