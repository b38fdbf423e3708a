//! Topic metadata on disk and the directory layout.
//!
//! ```text
//! <data_dir>/topics/<topic name>.json      one TopicRecord per topic (the commit point)
//! <data_dir>/logs/<topic id>/<partition>/  segment files of one partition
//! ```
//! Every metadata change is a whole-file replace (temp file, fsync, rename, fsync directory), so
//! a crash leaves the old or the new version. Creation makes the partition directories before
//! the metadata file and deletion removes the metadata file before the data; data directories
//! of topic ids no metadata file names are removed on open.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::storage::{TopicConfig, TopicMeta};
#[cfg(test)]
use crate::storage::{validate_topic_name, StorageError};

/// The persisted form of a topic.
#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: String,
    partitions: i32,
    config: TopicConfig,
}

/// Directory of topic metadata files.
pub(crate) fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics")
}

/// Directory of all partition data.
pub(crate) fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// Directory of one topic's partitions.
pub(crate) fn topic_dir(data_dir: &Path, id: uuid::Uuid) -> PathBuf {
    logs_dir(data_dir).join(id.simple().to_string())
}

/// Directory of one partition.
pub(crate) fn partition_dir(data_dir: &Path, id: uuid::Uuid, partition: i32) -> PathBuf {
    topic_dir(data_dir, id).join(partition.to_string())
}

/// Fsyncs a directory so entries created, renamed or removed in it are durable.
///
/// # Errors
/// I/O errors.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically and durably.
///
/// # Errors
/// I/O errors.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Persists a topic's metadata (create, alter, grow).
///
/// # Errors
/// I/O errors.
pub(crate) fn save_topic(data_dir: &Path, meta: &TopicMeta) -> io::Result<()> {
    let record = TopicRecord {
        name: meta.name.to_string(),
        id: meta.id.to_string(),
        partitions: meta.partitions,
        config: meta.config.clone(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
    write_atomic(&topics_dir(data_dir), &format!("{}.json", meta.name), &json)
}

/// Removes a topic's metadata file durably (the commit point of a deletion).
///
/// # Errors
/// I/O errors.
pub(crate) fn remove_topic(data_dir: &Path, name: &str) -> io::Result<()> {
    let dir = topics_dir(data_dir);
    std::fs::remove_file(dir.join(format!("{name}.json")))?;
    fsync_dir(&dir)
}

/// Loads every topic's metadata, creating the layout directories when missing, and removes
/// data directories no topic owns.
///
/// # Errors
/// I/O errors; a metadata file that does not parse is an `InvalidData` error (refusing to start
/// is safer than silently dropping a topic).
pub(crate) fn load_topics(data_dir: &Path) -> io::Result<Vec<TopicMeta>> {
    let tdir = topics_dir(data_dir);
    std::fs::create_dir_all(&tdir)?;
    std::fs::create_dir_all(logs_dir(data_dir))?;
    let mut topics = Vec::new();
    for entry in std::fs::read_dir(&tdir)? {
        let path = entry?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {}
            Some("tmp") => {
                std::fs::remove_file(&path)?;
                continue;
            }
            _ => continue,
        }
        let bad =
            |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
        let record: TopicRecord =
            serde_json::from_slice(&std::fs::read(&path)?).map_err(|e| bad(e.to_string()))?;
        let id = uuid::Uuid::parse_str(&record.id).map_err(|e| bad(e.to_string()))?;
        if record.partitions <= 0 {
            return Err(bad(format!("invalid partition count {}", record.partitions)));
        }
        topics.push(TopicMeta {
            name: Arc::from(record.name.as_str()),
            id,
            partitions: record.partitions,
            config: record.config,
        });
    }
    let owned: Vec<String> = topics.iter().map(|t| t.id.simple().to_string()).collect();
    for entry in std::fs::read_dir(logs_dir(data_dir))? {
        let entry = entry?;
        if !owned
            .iter()
            .any(|o| entry.file_name().to_str() == Some(o.as_str()))
        {
            warn!(path = %entry.path().display(), "removing data of a deleted topic");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "my-topic_1.x", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "tópico", "a/b", &"x".repeat(250)] {
            assert!(
                matches!(validate_topic_name(bad), Err(StorageError::InvalidTopic(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_round_trips_and_orphans_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        load_topics(data).unwrap();
        let meta = TopicMeta {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 3,
            config: TopicConfig {
                retention_ms: 5,
                ..TopicConfig::default()
            },
        };
        std::fs::create_dir_all(partition_dir(data, meta.id, 0)).unwrap();
        let orphan = partition_dir(data, uuid::Uuid::new_v4(), 0);
        std::fs::create_dir_all(&orphan).unwrap();
        save_topic(data, &meta).unwrap();
        assert_eq!(load_topics(data).unwrap(), vec![meta.clone()]);
        assert!(!orphan.exists());
        assert!(partition_dir(data, meta.id, 0).exists());
        remove_topic(data, "t").unwrap();
        assert!(load_topics(data).unwrap().is_empty());
        assert!(!partition_dir(data, meta.id, 0).exists());
    }
}
