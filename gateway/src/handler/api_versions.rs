//! ApiVersions: the supported ranges from the one version table.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::Context;
use crate::protocol::api_versions_body;

/// Answers with our ranges. Client software name/version (v3+) must be valid per KIP-511.
pub(super) fn handle(_ctx: &Context, version: i16, req: ApiVersionsRequest) -> ApiVersionsResponse {
    // Kafka refuses names outside [a-zA-Z0-9.-]; empty values are tolerated for old clients.
    let valid = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    };
    let ok = version < 3 || (valid(&req.client_software_name) && valid(&req.client_software_version));
    let mut body = api_versions_body(if ok {
        None
    } else {
        Some(ResponseError::InvalidRequest)
    });
    if version >= 3 {
        body.finalized_features_epoch = -1;
    }
    body
}
