//! Request decoding and response encoding on top of the `kafka-protocol` crate.
//!
//! Nothing here touches a socket: [`decode_request`] turns one whole frame (without its size
//! prefix) into a typed request, and [`encode_response`] turns a typed response into one whole
//! frame (with its size prefix). The wire format itself is never hand-written.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

mod errors;
#[cfg(test)]
mod hostile_test;
#[cfg(test)]
mod old_versions_test;
pub mod versions;

pub use errors::first_error_code;

/// Failures to decode or encode a frame. Every one of them closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Frame too short to hold a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    /// The API key is not one the gateway serves.
    #[error("unsupported api key {0}")]
    UnknownApi(i16),
    /// The API is served but not at this version.
    #[error("unsupported version {version} of api {api:?}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
    },
    /// The header or body could not be decoded.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's message.
        reason: String,
    },
    /// A response could not be encoded (a bug or an impossible value).
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The encoder's message.
        reason: String,
    },
}

impl CodecError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ShortFrame(_) => "short_frame",
            Self::UnknownApi(_) => "unknown_api",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Malformed { .. } => "malformed",
            Self::Encode { .. } => "encode",
        }
    }
}

/// A decoded request, or an ApiVersions request at a version we cannot parse.
// One value per request, moved once into dispatch: boxing the body would add an allocation per
// request to spare a few hundred bytes on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// A request the gateway serves.
    Request {
        /// The decoded header.
        header: RequestHeader,
        /// The API.
        api: ApiKey,
        /// The decoded body.
        body: RequestKind,
    },
    /// ApiVersions at an unsupported version: answered with a v0 body carrying
    /// UNSUPPORTED_VERSION and our ranges so the client downgrades (KIP-511).
    ApiVersionsUnsupported {
        /// Correlation id to echo.
        correlation_id: i32,
    },
}

/// Decodes one frame (size prefix already removed).
///
/// # Errors
/// [`CodecError`] for short, unknown, unsupported or malformed frames.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::ShortFrame(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|()| CodecError::UnknownApi(key))?;
    match versions::check(key, version) {
        Ok(_) => {}
        Err(versions::Refusal::UnsupportedVersion) if api == ApiKey::ApiVersions => {
            let correlation_id = (&frame[4..8]).get_i32();
            return Ok(Decoded::ApiVersionsUnsupported { correlation_id });
        }
        Err(versions::Refusal::UnsupportedVersion) => {
            return Err(CodecError::UnsupportedVersion { api, version })
        }
        Err(versions::Refusal::UnknownApi) => return Err(CodecError::UnknownApi(key)),
    }
    let malformed = |e: anyhow::Error| CodecError::Malformed { api, version, reason: format!("{e:#}") };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).map_err(malformed)?;
    let body = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    Ok(Decoded::Request { header, api, body })
}

/// Encodes a response frame including its 4-byte size prefix.
///
/// # Errors
/// [`CodecError::Encode`] when the crate refuses a value (e.g. a field absent at this version).
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, CodecError> {
    let err = |e: anyhow::Error| CodecError::Encode { api, version, reason: format!("{e:#}") };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// The ApiVersions response body listing [`versions::SUPPORTED`].
pub fn api_versions_body(error: Option<ResponseError>) -> ApiVersionsResponse {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    ApiVersionsResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_api_keys(
            versions::SUPPORTED
                .iter()
                .map(|a| ApiVersion::default().with_api_key(a.key as i16).with_min_version(a.min).with_max_version(a.max))
                .collect(),
        )
}

/// The frame answering an ApiVersions request at an unsupported version: header v0, body v0.
///
/// # Errors
/// [`CodecError::Encode`] never in practice (v0 encodes every field used).
pub fn encode_api_versions_unsupported(correlation_id: i32) -> Result<BytesMut, CodecError> {
    let body = ResponseKind::ApiVersions(api_versions_body(Some(ResponseError::UnsupportedVersion)));
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn frame(api: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_flexible_and_non_flexible_requests() {
        for v in [0, 3, 4] {
            let f = frame(ApiKey::ApiVersions, v, &RequestKind::ApiVersions(ApiVersionsRequest::default()));
            assert!(matches!(decode_request(f).unwrap(), Decoded::Request { api: ApiKey::ApiVersions, .. }));
        }
        for v in [0, 8, 9, 12] {
            let f = frame(ApiKey::Metadata, v, &RequestKind::Metadata(MetadataRequest::default()));
            match decode_request(f).unwrap() {
                Decoded::Request { header, .. } => assert_eq!(header.correlation_id, 7),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn future_api_versions_gets_v0_unsupported_body() {
        let mut f = BytesMut::new();
        f.put_i16(ApiKey::ApiVersions as i16);
        f.put_i16(99);
        f.put_i32(42);
        f.put_i16(-1);
        match decode_request(f.freeze()).unwrap() {
            Decoded::ApiVersionsUnsupported { correlation_id } => assert_eq!(correlation_id, 42),
            other => panic!("{other:?}"),
        }
        let mut out = encode_api_versions_unsupported(42).unwrap().freeze();
        let _len = out.get_i32();
        assert_eq!(out.get_i32(), 42);
        let body = ApiVersionsResponse::decode(&mut out, 0).unwrap();
        assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
        assert_eq!(body.api_keys.len(), versions::SUPPORTED.len());
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(decode_request(Bytes::from_static(b"\x00\x01")), Err(CodecError::ShortFrame(2))));
        let unknown = Bytes::from_static(b"\x7f\x00\x00\x00\x00\x00\x00\x01\xff\xff");
        assert!(matches!(decode_request(unknown), Err(CodecError::UnknownApi(_))));
        let mut trunc = frame(ApiKey::Metadata, 9, &RequestKind::Metadata(MetadataRequest::default())).to_vec();
        trunc.truncate(trunc.len() - 1);
        let mut garbage = trunc.clone();
        garbage.extend_from_slice(&[0xff; 3]);
        assert!(decode_request(Bytes::from(trunc)).is_err());
        // Random bytes after a valid header must not panic either way.
        let _ = decode_request(Bytes::from(garbage));
    }
}
