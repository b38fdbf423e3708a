//! SASL SCRAM credentials in the replicated state: what SASL authenticates against on every
//! member, what DescribeUserScramCredentials lists and AlterUserScramCredentials changes, and
//! the seeding of `--sasl-users-file`'s users.
//!
//! Until this node has seeded the file's users into the cluster, SASL falls back to the file
//! for users the cluster never seeded, so a gateway authenticates its file's users from its
//! first connection; otherwise the replicated state alone decides (a user deleted through the
//! API stays deleted, also while a restarted gateway seeds again).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{ClusterError, Command, Coordinator};
use crate::sasl::{CredentialStore, ScramCredential, ScramHash, ScramLookup};

impl Coordinator {
    /// The user's replicated credential for `hash`.
    pub fn scram_credential(&self, user: &str, hash: ScramHash) -> Option<ScramCredential> {
        let applied = self.inner.applied.read();
        applied.state.scram.get(user)?.get(hash.mechanism()).cloned()
    }

    /// True once a users file seeded `user` into the cluster (whether or not it still has
    /// credentials).
    pub fn scram_seeded(&self, user: &str) -> bool {
        self.inner.applied.read().state.scram_seeded.contains(user)
    }

    /// Every user with a replicated credential: (mechanism, iterations) of each.
    pub fn scram_users(&self) -> BTreeMap<String, Vec<(ScramHash, u32)>> {
        let applied = self.inner.applied.read();
        applied
            .state
            .scram
            .iter()
            .map(|(user, creds)| {
                let infos = creds
                    .iter()
                    .filter_map(|(m, c)| Some((ScramHash::from_mechanism(m)?, c.iterations)))
                    .collect();
                (user.clone(), infos)
            })
            .collect()
    }
}

/// The credentials SASL listeners use: the replicated ones, the file's until seeded.
#[derive(Debug)]
pub struct ClusterCredentials {
    cluster: Coordinator,
    file: Option<Arc<CredentialStore>>,
    seeded: AtomicBool,
}

impl ClusterCredentials {
    /// Credentials of `cluster`, with `file`'s users as the seed.
    pub fn new(cluster: Coordinator, file: Option<Arc<CredentialStore>>) -> Self {
        Self {
            cluster,
            file,
            seeded: AtomicBool::new(false),
        }
    }

    /// Writes the file's users the cluster has never seen (each once per cluster, whichever
    /// member writes it first); from then on only the replicated state answers.
    ///
    /// # Errors
    /// A failed cluster write; the file keeps answering meanwhile.
    pub async fn seed(&self) -> Result<(), ClusterError> {
        if let Some(file) = &self.file {
            for (user, creds) in file.users() {
                if self.cluster.scram_seeded(user) {
                    continue;
                }
                let credentials = creds
                    .iter()
                    .map(|(hash, c)| (hash.mechanism().to_owned(), (*c).clone()))
                    .collect();
                self.cluster
                    .write(Command::SeedScramUser {
                        user: user.to_owned(),
                        credentials,
                    })
                    .await?;
            }
        }
        self.seeded.store(true, Ordering::Release);
        Ok(())
    }
}

impl ScramLookup for ClusterCredentials {
    fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredential> {
        if let Some(c) = self.cluster.scram_credential(user, hash) {
            return Some(c);
        }
        // A user the cluster already seeded answers from the cluster only, even before this
        // node seeded its file: a user deleted through the API stays deleted across restarts.
        if self.seeded.load(Ordering::Acquire) || self.cluster.scram_seeded(user) {
            return None;
        }
        self.file.as_ref()?.scram(user, hash).cloned()
    }
}
