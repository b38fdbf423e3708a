//! Wire-compatibility suite: real clients against the real gateway binary.
//!
//! Each test starts its own gateway (fresh ports and data dir), so tests run in parallel. Client
//! scripts live in `tests/clients/`; `scripts/test.sh` installs the clients and builds the binary.

mod admin_http;
mod bad_input;
mod cluster;
mod cluster_admin;
mod confluent;
mod control_plane;
mod disk_full;
mod durability;
mod groups;
mod hostile;
mod kafka_python;
mod kafkajs;
mod kcat;
mod legacy_clients;
mod pipelining;
mod seaweedmq;
mod security;
mod security_cluster;
mod security_oauth;
mod security_users;
mod smq_startup;
mod smq_wal;
mod smq_wal_cluster;
