//! Shared helpers of the workspace integration suites.
//!
//! The suites drive the real `kafka-gateway` binary with real Kafka clients (kcat, Python
//! confluent-kafka and kafka-python, Node kafkajs) and with hand-built raw frames. Every test starts
//! its own gateway on its own free loopback ports and data directory, so tests run in parallel.
//!
//! # Layout
//! - [`harness::gateway`]: [`Gateway`] process lifecycle (start, readiness, SIGTERM stop, `kill -9`,
//!   restart on the same data directory and ports) and its admin HTTP endpoints.
//! - [`harness::client`]: [`ClientCommand`] runs a client script (python3, node, kcat) with a
//!   deadline, in the foreground or in the background with line-by-line stdout.
//! - [`harness::raw`]: [`RawClient`], a blocking Kafka client over one TCP connection built on
//!   `kafka-protocol` types, for malformed-input tests and topic setup.
//! - [`harness::phase`]: logged test phases.
//!
//! Everything a test prints goes to stderr through the test harness capture, so it is shown only
//! when the test fails; the gateway's own log tail is printed the same way when a [`Gateway`] drops.

pub mod harness;

pub use harness::client::{BackgroundClient, ClientCommand};
pub use harness::gateway::{Gateway, GatewayOptions};
pub use harness::phase::phase;
pub use harness::raw::RawClient;
pub use harness::weed::Backend;
