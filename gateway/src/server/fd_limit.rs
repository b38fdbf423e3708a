//! The process's open-file limit, raised at start.
//!
//! Every connection, segment file and raft/SeaweedMQ channel takes a descriptor, and the soft
//! limit many systems start processes with (1024) is far below what `--max-connections` (10,000)
//! and a few thousand partitions need. The hard limit is what the administrator allows, so the
//! gateway raises its soft limit to it (as Kafka's and Redpanda's packaging do with LimitNOFILE)
//! and logs both; what is still short shows up as the accept loop's "out of file descriptors"
//! error rather than as failures scattered over storage.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The open-file limit before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// Soft limit found at start (`None` = unlimited).
    pub soft_before: Option<u64>,
    /// Soft limit now in force.
    pub soft: Option<u64>,
    /// Hard limit (`None` = unlimited).
    pub hard: Option<u64>,
}

/// The soft limit to set: the hard limit when it is finite and above the current soft limit.
/// An unlimited hard limit is left alone (Linux refuses an unlimited soft limit for open files;
/// the kernel's `nr_open` is the real bound).
fn target(soft: Option<u64>, hard: Option<u64>) -> Option<u64> {
    match (soft, hard) {
        (Some(s), Some(h)) if h > s => Some(h),
        _ => None,
    }
}

/// Raises the soft open-file limit to the hard limit.
///
/// # Errors
/// The OS error when the limit cannot be read or set.
pub fn raise_open_files_limit() -> std::io::Result<OpenFilesLimit> {
    let before = getrlimit(Resource::Nofile);
    let mut limit = OpenFilesLimit {
        soft_before: before.current,
        soft: before.current,
        hard: before.maximum,
    };
    if let Some(soft) = target(before.current, before.maximum) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                maximum: before.maximum,
            },
        )?;
        limit.soft = getrlimit(Resource::Nofile).current;
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_finite_higher_hard_limit_is_taken() {
        assert_eq!(target(Some(1024), Some(524_288)), Some(524_288));
        assert_eq!(target(Some(4096), Some(4096)), None);
        assert_eq!(target(Some(1024), None), None);
        assert_eq!(target(None, None), None);
    }

    /// Lowers the soft limit, then raises it. Run only in its own child process (it changes
    /// a process-wide limit other tests in the same process would feel).
    #[test]
    #[ignore = "run in a child process by a_lowered_soft_limit_is_raised_to_the_hard_limit"]
    fn child_lower_then_raise() {
        let start = getrlimit(Resource::Nofile);
        let Some(hard) = start.maximum.filter(|h| *h > 256) else {
            return;
        };
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: Some(hard),
            },
        )
        .expect("lowering the soft limit");
        let limit = raise_open_files_limit().expect("raising the limit");
        assert_eq!(
            limit,
            OpenFilesLimit {
                soft_before: Some(256),
                soft: Some(hard),
                hard: Some(hard),
            }
        );
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        assert_eq!(
            raise_open_files_limit().expect("again").soft,
            Some(hard),
            "idempotent"
        );
    }

    #[test]
    fn a_lowered_soft_limit_is_raised_to_the_hard_limit() {
        let name = format!(
            "{}::child_lower_then_raise",
            module_path!().split_once("::").expect("crate path").1
        );
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([name.as_str(), "--exact", "--ignored", "--test-threads=1"])
            .output()
            .expect("running the child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn raising_in_this_process_leaves_soft_at_hard() {
        // Only raises (lowering it here could starve tests running alongside of descriptors).
        let limit = raise_open_files_limit().expect("raising the limit");
        let now = getrlimit(Resource::Nofile);
        assert_eq!((limit.soft, limit.hard), (now.current, now.maximum));
        if let Some(hard) = now.maximum {
            assert_eq!(now.current, Some(hard), "{limit:?}");
        }
    }
}
