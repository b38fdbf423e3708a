//! Removing departing raft members through the gateway admin API before a scale-down.
//!
//! Endpoint (the gateway's cluster admin API, `gateway/src/cluster/admin_http.rs`, served on the
//! admin port and forwarded to the raft leader): `DELETE /cluster/members/{id}`. Only a `2xx`
//! answer means the membership change is committed; anything else (including a `404` from a
//! gateway that does not serve the cluster API) is a failure, and the StatefulSet is not shrunk,
//! so a scale-down never removes a pod that may still be a voter. The call presents the admin
//! token (`Authorization: Bearer`), which the gateway requires of every membership change.

use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Path prefix of the member endpoint on the gateway admin port (`/cluster/members/{id}`).
pub const MEMBERS_PATH: &str = "/cluster/members";
/// How long one removal call may take (a membership change commits through raft).
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a member could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The admin endpoint could not be reached.
    #[error("admin api unreachable at {url}: {reason}")]
    Unreachable {
        /// URL called.
        url: String,
        /// Transport error.
        reason: String,
    },
    /// The gateway refused or failed the removal.
    #[error("admin api answered {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The call did not finish within [`REMOVE_TIMEOUT`].
    #[error("admin api timed out after {0:?}")]
    Timeout(Duration),
}

/// Removes raft members of one gateway cluster.
#[async_trait]
pub trait MemberRemover: Send + Sync + 'static {
    /// Removes member `node_id`, asking the gateway at `admin_base` (`http://host:port`) with
    /// the admin token `admin_token` (none only for gateways that predate it).
    async fn remove(
        &self,
        admin_base: &str,
        admin_token: Option<&str>,
        node_id: i32,
    ) -> Result<(), MemberError>;
}

/// [`MemberRemover`] over HTTP/1.1 to the gateway admin API.
#[derive(Debug, Clone)]
pub struct HttpMemberRemover {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpMemberRemover {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

#[async_trait]
impl MemberRemover for HttpMemberRemover {
    async fn remove(
        &self,
        admin_base: &str,
        admin_token: Option<&str>,
        node_id: i32,
    ) -> Result<(), MemberError> {
        let url = format!("{admin_base}{MEMBERS_PATH}/{node_id}");
        let mut request = http::Request::delete(&url);
        if let Some(token) = admin_token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| MemberError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| MemberError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut body = String::from_utf8_lossy(&bytes).into_owned();
            body.truncate(512);
            Err(MemberError::Refused {
                status: status.as_u16(),
                body,
            })
        };
        tokio::time::timeout(REMOVE_TIMEOUT, call)
            .await
            .map_err(|_| MemberError::Timeout(REMOVE_TIMEOUT))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::delete;
    use std::sync::Arc;
    use tokio::sync::Mutex;

    const TOKEN: &str = "admin-token-0123456789";

    /// A gateway stand-in answering `status` to removals presenting [`TOKEN`] and 401 to others.
    async fn serve(status: StatusCode) -> (String, Arc<Mutex<Vec<i32>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().route(
            &format!("{MEMBERS_PATH}/{{id}}"),
            delete(move |Path(id): Path<i32>, headers: HeaderMap| {
                let log = Arc::clone(&log);
                async move {
                    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if bearer != Some(&format!("Bearer {TOKEN}")) {
                        return (StatusCode::UNAUTHORIZED, "token needed");
                    }
                    log.lock().await.push(id);
                    (status, "no quorum")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn deletes_the_member_and_accepts_only_success() {
        for status in [StatusCode::OK, StatusCode::NO_CONTENT] {
            let (base, seen) = serve(status).await;
            HttpMemberRemover::default()
                .remove(&base, Some(TOKEN), 4)
                .await
                .expect("removed");
            assert_eq!(*seen.lock().await, vec![4]);
        }
        // A gateway without the cluster API answers 404: the member may still be a voter.
        let (base, _) = serve(StatusCode::NOT_FOUND).await;
        let err = HttpMemberRemover::default()
            .remove(&base, Some(TOKEN), 4)
            .await
            .unwrap_err();
        assert!(matches!(err, MemberError::Refused { status: 404, .. }), "{err}");
        // Without the token the gateway refuses, and that is a failure too.
        let (base, seen) = serve(StatusCode::OK).await;
        let err = HttpMemberRemover::default()
            .remove(&base, None, 4)
            .await
            .unwrap_err();
        assert!(matches!(err, MemberError::Refused { status: 401, .. }), "{err}");
        assert!(seen.lock().await.is_empty());
    }

    #[tokio::test]
    async fn server_errors_and_unreachable_are_failures() {
        let (base, _) = serve(StatusCode::SERVICE_UNAVAILABLE).await;
        let err = HttpMemberRemover::default()
            .remove(&base, Some(TOKEN), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, MemberError::Refused { status: 503, ref body } if body == "no quorum"),
            "{err}"
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = HttpMemberRemover::default()
            .remove(&closed, Some(TOKEN), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, MemberError::Unreachable { .. }), "{err}");
    }
}
