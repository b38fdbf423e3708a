//! Test harness: the gateway process, client processes, a raw protocol client and phase logging.

pub mod client;
pub mod cluster;
pub mod cluster_probe;
pub mod gateway;
pub mod http;
pub mod phase;
pub mod proxy;
pub mod raw;
pub mod security;
pub mod tokens;
pub mod weed;
pub mod workload;
