//! The control-plane tokens of test clusters: one cluster token (raft peer calls) and one admin
//! token (mutating admin HTTP calls), written to files the gateways read with
//! `--cluster-token-file` and `--admin-token-file`.
//!
//! Invariant: the files live as long as the [`Tokens`] that wrote them, so a restarted gateway
//! reads the same tokens.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tempfile::TempDir;

use super::gateway::GatewayOptions;

/// The cluster token every test gateway of a cluster shares.
pub const CLUSTER_TOKEN: &str = "test-cluster-token-5f1c0a9e7b3d4c2a";
/// The admin token of test gateways.
pub const ADMIN_TOKEN: &str = "test-admin-token-8e2b6d4f0a1c3e5b";

/// Token files in a temporary directory.
#[derive(Debug)]
pub struct Tokens {
    dir: TempDir,
}

impl Tokens {
    /// Writes both token files.
    ///
    /// # Errors
    /// The directory or files cannot be written.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kgw-tokens-")
            .tempdir()
            .context("create token dir")?;
        std::fs::write(dir.path().join("cluster-token"), format!("{CLUSTER_TOKEN}\n"))?;
        std::fs::write(dir.path().join("admin-token"), format!("{ADMIN_TOKEN}\n"))?;
        Ok(Self { dir })
    }

    /// Path of the cluster token file.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir.path().join("cluster-token")
    }

    /// Path of the admin token file.
    pub fn admin_file(&self) -> PathBuf {
        self.dir.path().join("admin-token")
    }

    /// `opts` with both token flags.
    pub fn apply(&self, opts: GatewayOptions) -> GatewayOptions {
        opts.arg("--cluster-token-file", &self.cluster_file().display().to_string())
            .arg("--admin-token-file", &self.admin_file().display().to_string())
    }
}
