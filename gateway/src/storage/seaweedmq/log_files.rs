//! Reading flushed messages straight from the broker's log files.
//!
//! Why: SeaweedMQ 4.48 serves offsets that have left the broker's memory buffer through a disk
//! path that answers 1,000 messages per `FetchMessage` and re-reads the log file for each
//! (docs/seaweedmq-mapping.md §3.2): about 130 ms a call, so 100 B records read at a few percent
//! of the broker's memory speed. The same messages sit in the partition directory's log files,
//! one chunk per flushed buffer (at most 8 MiB) on a volume server: one HTTP GET each.
//!
//! Layout relied on (checked on `weed` 4.48): log files are named by their start time, so they
//! list in offset order; a file's `offset_max` attribute names its last offset (a partition's
//! first file may carry only `buffer_start`, the offset after its last); a chunk is a sequence of
//! `[u32 big-endian length][filer_pb.LogEntry]` with explicit offsets. The attributes only
//! narrow the search (they are off by one for some files); what is returned is decided by the
//! entries' own offsets, which must be dense, and files must list in increasing order. Any surprise
//! (a gap, an encrypted or manifest chunk, an HTTP or filer error) answers `None` and the caller reads
//! through `FetchMessage` as before, so this path can only make reads faster, never different.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use prost::Message;
use tracing::{debug, warn};

use super::client::SmqClient;
use super::durability::{BUFFER_START_ATTR, OFFSET_MAX_ATTR};
use super::error::{filer_not_found, SmqError, SmqResult};
use super::pb::filer_pb::{Entry, FileChunk, ListEntriesRequest, LogEntry, LookupVolumeRequest};
use super::pb::messaging_pb::DataMessage;
use crate::storage::Offset;

/// A partition directory is listed again at most this often while reads run past its files.
const RELIST_AFTER: Duration = Duration::from_secs(1);
/// Entries read per directory listing.
const LIST_LIMIT: u32 = 10_000;
/// How long reads go through the broker after a volume server failed.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// How long one chunk may take to arrive.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest chunk body accepted (the broker's buffers are 8 MiB).
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// One stored chunk of a log file, and the offsets it holds once read.
#[derive(Debug, Clone)]
struct Chunk {
    file_id: String,
    /// Stored gzipped (the filer compresses chunks it finds compressible).
    compressed: bool,
    range: Option<(Offset, Offset)>,
}

#[derive(Debug, Clone)]
struct LogFile {
    name: String,
    /// The file's last offset.
    last: Offset,
    /// `None` when a chunk is in a form this reader does not decode (compressed, encrypted, a
    /// manifest): reads in this file go through the broker.
    chunks: Option<Vec<Chunk>>,
}

/// What is known of one partition directory's log files.
#[derive(Debug, Default)]
pub struct FileIndex {
    files: Vec<LogFile>,
    listed_at: Option<Instant>,
    /// False once the files broke the layout's rules (offsets not increasing across files).
    broken: bool,
}

impl FileIndex {
    pub(super) fn last_offset(&self) -> Offset {
        self.files.last().map_or(-1, |f| f.last)
    }

    /// Merges a listing from the last known file on (inclusive: a flush may have appended to it).
    fn merge(&mut self, listed: Vec<LogFile>) {
        for file in listed {
            match self.files.last() {
                Some(last) if last.name == file.name => {
                    let known = self.files.len() - 1;
                    self.files[known] = merge_chunks(&self.files[known], file);
                }
                Some(last) if file.name < last.name => {}
                Some(last) if file.last <= last.last => {
                    debug!(file = %file.name, last = file.last, previous = last.last, "log files do not increase in offset; reading through the broker");
                    self.broken = true;
                }
                _ => self.files.push(file),
            }
        }
    }

    /// Index of the first file whose listed last offset is at or after `offset`.
    fn locate(&self, offset: Offset) -> Option<usize> {
        let i = self.files.partition_point(|f| f.last < offset);
        (i < self.files.len()).then_some(i)
    }
}

/// Keeps the offsets already learned of chunks that are listed again.
fn merge_chunks(known: &LogFile, mut fresh: LogFile) -> LogFile {
    if let (Some(old), Some(new)) = (&known.chunks, &mut fresh.chunks) {
        for (n, o) in new.iter_mut().zip(old) {
            if n.file_id == o.file_id {
                n.range = o.range;
            }
        }
    }
    fresh
}

/// True for the broker's log file names, its buffers' start times as `YYYY-MM-DD-HH-MM-SS`.
/// A partition directory holds other files too: `checkpoint.offset`, and the positions the
/// broker saves for subscriber groups.
pub(super) fn is_log_file_name(name: &str) -> bool {
    name.len() == 19
        && name.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 | 10 | 13 | 16 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

fn log_file_of(entry: Entry) -> Option<LogFile> {
    if entry.is_directory || !is_log_file_name(&entry.name) {
        return None;
    }
    let attr = |name: &str| {
        entry
            .extended
            .get(name)
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes)
    };
    let last = attr(OFFSET_MAX_ATTR).or_else(|| attr(BUFFER_START_ATTR).map(|b| b - 1))?;
    let mut chunks: Vec<&FileChunk> = entry.chunks.iter().collect();
    chunks.sort_by_key(|c| c.offset);
    let chunks = chunks
        .into_iter()
        .map(|c| {
            let readable = !c.is_chunk_manifest && c.cipher_key.is_empty();
            readable.then(|| Chunk {
                file_id: file_id(c),
                compressed: c.is_compressed,
                range: None,
            })
        })
        .collect::<Option<Vec<_>>>()
        .filter(|c| !c.is_empty() && c.iter().all(|c| !c.file_id.is_empty()));
    Some(LogFile {
        name: entry.name,
        last,
        chunks,
    })
}

/// The chunk's `volume,keycookie` id (newer filers fill only the structured `fid`).
fn file_id(c: &FileChunk) -> String {
    if !c.file_id.is_empty() {
        return c.file_id.clone();
    }
    c.fid
        .as_ref()
        .map(|f| format!("{},{:x}{:08x}", f.volume_id, f.file_key, f.cookie))
        .unwrap_or_default()
}

/// Inflates a gzipped chunk, refusing more than [`MAX_CHUNK_BYTES`].
fn gunzip(body: &[u8]) -> Result<Bytes, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_CHUNK_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("inflating a gzipped chunk: {e}"))?;
    if out.len() > MAX_CHUNK_BYTES {
        return Err(format!("a gzipped chunk inflates past {MAX_CHUNK_BYTES} bytes"));
    }
    Ok(Bytes::from(out))
}

/// Parses a chunk body into its log entries.
fn parse_chunk(mut body: Bytes) -> SmqResult<Vec<LogEntry>> {
    let mut entries = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 4 {
            return Err(SmqError::Protocol("log chunk ends inside a length prefix".into()));
        }
        let len = body.get_u32() as usize;
        if len > body.remaining() {
            return Err(SmqError::Protocol(format!(
                "log chunk entry of {len} bytes with {} left",
                body.remaining()
            )));
        }
        let entry = LogEntry::decode(body.split_to(len))
            .map_err(|e| SmqError::Protocol(format!("log chunk entry: {e}")))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads log files of SMQ partitions from the filer and volume servers.
#[derive(Debug)]
pub struct LogFiles {
    http: Client<HttpConnector, Empty<Bytes>>,
    /// Volume id -> volume server `host:port`.
    volumes: Mutex<HashMap<String, String>>,
    /// Direct reads are off until then after a volume server failed (an unreachable one would
    /// otherwise cost a connect timeout per read).
    paused_until: Mutex<Option<Instant>>,
}

impl Default for LogFiles {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            volumes: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
        }
    }
}

impl LogFiles {
    /// Messages from `offset` on, up to the end of the chunk holding it, as stored; `None` when
    /// the flushed files do not (or not verifiably) hold `offset`.
    ///
    /// # Errors
    /// [`SmqError`] when the filer or a volume server fails or a chunk is malformed; the caller
    /// reads through the broker then.
    pub async fn read(
        &self,
        client: &SmqClient,
        dir: &str,
        index: &mut FileIndex,
        offset: Offset,
    ) -> SmqResult<Option<Vec<DataMessage>>> {
        if index.broken || self.paused_until.lock().is_some_and(|t| Instant::now() < t) {
            return Ok(None);
        }
        if offset > index.last_offset() && index.listed_at.is_none_or(|t| t.elapsed() >= RELIST_AFTER) {
            let from = index.files.last().map(|f| f.name.clone()).unwrap_or_default();
            let listed = self.list(client, dir, from).await?;
            index.merge(listed);
            index.listed_at = Some(Instant::now());
        }
        let Some(file) = index.locate(offset) else {
            return Ok(None);
        };
        // The offset attributes are off by one for some files (4.48 writes `offset_max` as the
        // next offset after a size-triggered flush), so the file after the located one is tried
        // too. Only the entries' own offsets decide what is returned.
        let last_file = (file + 1).min(index.files.len() - 1);
        for f in &mut index.files[file..=last_file] {
            let Some(chunks) = f.chunks.as_mut() else {
                return Ok(None);
            };
            for chunk in chunks {
                match chunk.range {
                    Some((_, last)) if last < offset => continue,
                    Some((first, _)) if first > offset => return Ok(None),
                    _ => {}
                }
                let body = match self.get(client, &chunk.file_id, chunk.compressed).await {
                    Ok(body) => body,
                    Err(e) => {
                        warn!(error = %e, pause_s = PAUSE_AFTER_FAILURE.as_secs(), "reading a log file from its volume server failed; reading through the broker for a while");
                        *self.paused_until.lock() = Some(Instant::now() + PAUSE_AFTER_FAILURE);
                        return Err(e);
                    }
                };
                let entries = parse_chunk(body)?;
                let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                    return Ok(None);
                };
                if !entries.iter().zip(first.offset..).all(|(e, o)| e.offset == o) {
                    debug!(chunk = %chunk.file_id, "log chunk offsets are not dense; reading through the broker");
                    return Ok(None);
                }
                let (first, last) = (first.offset, last.offset);
                chunk.range = Some((first, last));
                if last < offset {
                    continue;
                }
                if first > offset {
                    return Ok(None);
                }
                let skip = usize::try_from(offset - first).unwrap_or(usize::MAX);
                let messages = entries
                    .into_iter()
                    .skip(skip)
                    .map(|e| DataMessage {
                        key: e.key,
                        value: e.data,
                        ts_ns: e.ts_ns,
                    })
                    .collect();
                return Ok(Some(messages));
            }
        }
        Ok(None)
    }

    /// The offset of the last message a listed log file holds, read from its last chunk (its
    /// attributes can name a later offset than it holds). `None` for an empty file or one whose
    /// last chunk is in a form this reader does not decode.
    ///
    /// # Errors
    /// [`SmqError`] when the volume server fails or the chunk is malformed.
    pub async fn last_offset(&self, client: &SmqClient, entry: &Entry) -> SmqResult<Option<Offset>> {
        let Some(chunk) = entry.chunks.iter().max_by_key(|c| c.offset) else {
            // A small file may be stored inline in its entry.
            return Ok(parse_chunk(entry.content.clone())?.last().map(|e| e.offset));
        };
        if chunk.is_chunk_manifest || !chunk.cipher_key.is_empty() {
            return Ok(None);
        }
        let entries = parse_chunk(self.get(client, &file_id(chunk), chunk.is_compressed).await?)?;
        Ok(entries.last().map(|e| e.offset))
    }

    /// The log files of `dir` from the file named `from` on (inclusive).
    async fn list(&self, client: &SmqClient, dir: &str, from: String) -> SmqResult<Vec<LogFile>> {
        let addr = client.discovery().filer().await?;
        let mut filer = client.discovery().channels().filer(&addr)?;
        let request = ListEntriesRequest {
            directory: dir.to_string(),
            prefix: String::new(),
            start_from_file_name: from,
            inclusive_start_from: true,
            limit: LIST_LIMIT,
        };
        let mut stream = match filer.list_entries(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if filer_not_found(&s) => return Ok(Vec::new()),
            Err(s) => return Err(SmqError::rpc("ListEntries", &addr, s)),
        };
        let mut files = Vec::new();
        while let Some(r) = stream
            .message()
            .await
            .map_err(|s| SmqError::rpc("ListEntries", &addr, s))?
        {
            files.extend(r.entry.and_then(log_file_of));
        }
        Ok(files)
    }

    /// One chunk's bytes from its volume server.
    async fn get(&self, client: &SmqClient, file_id: &str, compressed: bool) -> SmqResult<Bytes> {
        let volume = file_id.split(',').next().unwrap_or_default().to_string();
        let server = self.volume_server(client, &volume).await?;
        let uri: hyper::Uri = format!("http://{server}/{file_id}")
            .parse()
            .map_err(|e| SmqError::Protocol(format!("chunk url for {file_id}: {e}")))?;
        let failed = |why: String| {
            // The volume may have moved: look it up again next time.
            self.volumes.lock().remove(&volume);
            SmqError::Unavailable(format!("reading log chunk {file_id} from {server}: {why}"))
        };
        let fetch = async {
            let response = self.http.get(uri).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let gzip_encoded = response
                .headers()
                .get(hyper::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let body = Limited::new(response.into_body(), MAX_CHUNK_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string())?;
            // A volume server normally inflates a gzipped chunk for a client that does not
            // accept gzip; inflate here when it did not.
            if gzip_encoded || (compressed && body.starts_with(&[0x1f, 0x8b])) {
                return tokio::task::spawn_blocking(move || gunzip(&body))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(body)
        };
        match tokio::time::timeout(CHUNK_TIMEOUT, fetch).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(why)) => Err(failed(why)),
            Err(_) => Err(failed(format!("no answer within {CHUNK_TIMEOUT:?}"))),
        }
    }

    async fn volume_server(&self, client: &SmqClient, volume: &str) -> SmqResult<String> {
        if let Some(server) = self.volumes.lock().get(volume) {
            return Ok(server.clone());
        }
        let addr = client.discovery().filer().await?;
        let mut filer = client.discovery().channels().filer(&addr)?;
        let located = filer
            .lookup_volume(LookupVolumeRequest {
                volume_ids: vec![volume.to_string()],
            })
            .await
            .map_err(|s| SmqError::rpc("LookupVolume", &addr, s))?
            .into_inner();
        let server = located
            .locations_map
            .get(volume)
            .and_then(|l| l.locations.first())
            .map(|l| l.url.clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SmqError::Unavailable(format!("no volume server holds volume {volume}")))?;
        self.volumes.lock().insert(volume.to_string(), server.clone());
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    fn chunk(offsets: std::ops::Range<i64>) -> Bytes {
        let mut b = BytesMut::new();
        for o in offsets {
            let e = LogEntry {
                ts_ns: o * 10,
                partition_key_hash: 0,
                data: Bytes::from(format!("v{o}")),
                key: Bytes::from(format!("k{o}")),
                offset: o,
            };
            b.put_u32(e.encoded_len() as u32);
            e.encode(&mut b).unwrap();
        }
        b.freeze()
    }

    fn file(name: &str, last: i64) -> LogFile {
        LogFile {
            name: name.into(),
            last,
            chunks: Some(vec![Chunk {
                file_id: format!("1,{name}"),
                compressed: false,
                range: None,
            }]),
        }
    }

    #[test]
    fn chunks_parse_into_entries_and_truncation_is_an_error() {
        let body = chunk(5..8);
        let entries = parse_chunk(body.clone()).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!(entries[1].key.as_ref(), b"k6");
        assert_eq!(entries[2].data.as_ref(), b"v7");
        assert!(parse_chunk(body.slice(..body.len() - 1)).is_err());
        assert!(parse_chunk(Bytes::from_static(&[0, 0])).is_err());
        assert!(parse_chunk(Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn files_locate_offsets_and_a_relisted_last_file_is_replaced() {
        let mut index = FileIndex::default();
        index.merge(vec![file("a", 9), file("b", 19)]);
        assert_eq!(index.locate(0), Some(0));
        assert_eq!(index.locate(9), Some(0));
        assert_eq!(index.locate(10), Some(1));
        assert_eq!(index.locate(20), None);
        // The last file grew (a flush appended to it) and a new one follows.
        index.merge(vec![file("b", 29), file("c", 39)]);
        assert_eq!(index.files.len(), 3);
        assert_eq!(index.locate(25), Some(1));
        assert_eq!(index.locate(35), Some(2));
        assert!(!index.broken);
    }

    #[test]
    fn gzipped_chunks_inflate_to_their_entries() {
        use std::io::Write;
        let body = chunk(3..6);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let inflated = gunzip(&gz.finish().unwrap()).unwrap();
        assert_eq!(inflated, body);
        assert!(gunzip(b"not gzip").is_err());
    }

    #[test]
    fn only_time_named_files_are_log_files() {
        assert!(is_log_file_name("2026-11-22-14-18-44"));
        for other in [
            "checkpoint.offset",
            "kafka-gateway.offset",
            "2026-11-22-14-18-4",
            "2026-11-22-14-18-4x",
        ] {
            assert!(!is_log_file_name(other), "{other}");
        }
    }

    #[test]
    fn files_whose_offsets_go_backwards_disable_the_index() {
        let mut index = FileIndex::default();
        index.merge(vec![file("a", 9), file("b", 5)]);
        assert!(index.broken);
    }

    #[test]
    fn unusual_chunks_and_files_without_offsets_are_not_read_directly() {
        let mut extended = HashMap::new();
        extended.insert(
            OFFSET_MAX_ATTR.to_string(),
            Bytes::copy_from_slice(&41i64.to_be_bytes()),
        );
        let entry = |chunk: FileChunk, extended: HashMap<String, Bytes>| Entry {
            name: "2026-11-22-12-00-00".into(),
            is_directory: false,
            chunks: vec![chunk],
            extended,
            attributes: None,
            content: Bytes::new(),
        };
        let plain = FileChunk {
            file_id: "3,01637037d6".into(),
            ..Default::default()
        };
        let f = log_file_of(entry(plain.clone(), extended.clone())).unwrap();
        assert_eq!(f.last, 41);
        assert_eq!(f.chunks.unwrap()[0].file_id, "3,01637037d6");
        let compressed = FileChunk {
            is_compressed: true,
            ..plain.clone()
        };
        assert!(
            log_file_of(entry(compressed, extended.clone()))
                .unwrap()
                .chunks
                .unwrap()[0]
                .compressed
        );
        let manifest = FileChunk {
            is_chunk_manifest: true,
            ..plain.clone()
        };
        assert!(log_file_of(entry(manifest, extended.clone()))
            .unwrap()
            .chunks
            .is_none());
        assert!(log_file_of(entry(plain, HashMap::new())).is_none());
        let structured = FileChunk {
            fid: Some(super::super::pb::filer_pb::FileId {
                volume_id: 3,
                file_key: 0x01,
                cookie: 0x637037d6,
            }),
            ..Default::default()
        };
        assert_eq!(file_id(&structured), "3,1637037d6");
    }
}
