//! kafka-gateway: a Kafka-wire-compatible gateway with an embedded durable log and a SeaweedMQ
//! backend.
//!
//! # Layout
//! The request path, one layer per module, each hiding the one below:
//! - [`server`]: accept loop (connection limit), per-connection framing and sessions.
//! - [`protocol`]: the one table of supported API versions, header decoding, response encoding.
//! - [`handler`]: one file per Kafka API, typed request to typed response, no sockets.
//! - [`storage`]: the Kafka-shaped [`storage::Storage`] trait and its backends.
//! - [`records`]: v2 record batch header validation and in-place rewrites, the batch codec
//!   (`batch_codec`), recompression to a topic's codec (`recompress`) and message format v0/v1
//!   conversion for old clients (`legacy`).
//!
//! Around it: [`config`] (the one typed configuration, built in `main`), [`admin`] (the admin
//! HTTP server), [`auth`] (control-plane tokens), [`metrics`] (request-path metrics),
//! [`producer_ids`] (InitProducerId ids), [`sasl`] (SASL authentication of Kafka clients).

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod group;
pub mod handler;
pub mod metrics;
pub mod producer_ids;
pub mod protocol;
pub mod records;
pub mod sasl;
pub mod server;
pub mod storage;
