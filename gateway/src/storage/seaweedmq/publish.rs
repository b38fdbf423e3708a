//! One pipelined `PublishMessage` stream per partition.
//!
//! The stream is opened with `init` (the exact `Partition` of the layout) and the broker's empty
//! hello is consumed. Then a writer task turns submitted batches into `data` frames, keeping at
//! most [`WINDOW`] frames unacknowledged, and a reader task matches the broker's acks (one per
//! frame, in order) to the batches FIFO. Frames of one batch are sent back to back by the one
//! writer, so a batch gets contiguous offsets as long as this stream is the partition's only
//! publisher; the reader checks that and reports a batch whose acks are not contiguous.
//!
//! Any error ends the stream: every unanswered batch fails, and the owner opens a new stream
//! (after a fresh layout lookup) on the next append.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::discovery::Channels;
use super::error::{SmqError, SmqErrorKind, SmqResult};
use super::pb::messaging_pb::publish_message_request::{InitMessage, Message};
use super::pb::messaging_pb::{DataMessage, PublishMessageRequest, PublishMessageResponse};
use super::pb::schema_pb::{Partition, Topic};

/// Largest number of frames in flight (sent, not yet acknowledged) on one stream.
pub const WINDOW: usize = 4096;
const PUBLISHER_NAME: &str = "kafka-gateway";

/// Offsets the broker assigned to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// Offset of the first message.
    pub base_offset: i64,
    /// Offset of the last message.
    pub last_offset: i64,
    /// False when another publisher interleaved: the batch's offsets are not contiguous.
    pub contiguous: bool,
}

struct Job {
    messages: Vec<DataMessage>,
    done: oneshot::Sender<SmqResult<Acked>>,
}

struct Pending {
    remaining: usize,
    base: Option<i64>,
    last: i64,
    contiguous: bool,
    done: oneshot::Sender<SmqResult<Acked>>,
}

/// Set once when a stream fails or ends; wakes whoever waits for that.
#[derive(Debug, Default)]
struct Closed {
    flag: AtomicBool,
    changed: Notify,
}

impl Closed {
    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    fn get(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// Resolves when its stream has failed or ended (see [`Publisher::close_signal`]).
#[derive(Debug, Clone)]
pub struct CloseSignal(Arc<Closed>);

impl CloseSignal {
    /// Waits until the stream is closed (at once if it already is).
    pub async fn closed(&self) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.0.get() {
                return;
            }
            changed.await;
        }
    }
}

/// A live publish stream to one partition leader.
#[derive(Debug)]
pub struct Publisher {
    jobs: mpsc::Sender<Job>,
    closed: Arc<Closed>,
    /// The partition generation this stream publishes to.
    pub generation: i64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("messages", &self.messages.len())
            .finish()
    }
}

impl Publisher {
    /// Opens a stream to `leader` for `partition` of `topic` and consumes the hello.
    ///
    /// # Errors
    /// [`SmqError`] when the broker refuses the init (not leader, unknown partition, ...).
    pub async fn open(
        channels: &Channels,
        leader: &str,
        topic: Topic,
        partition: Partition,
    ) -> SmqResult<Self> {
        let generation = partition.unix_time_ns;
        let (frames_tx, frames_rx) = mpsc::channel::<Vec<PublishMessageRequest>>(64);
        let init = PublishMessageRequest {
            message: Some(Message::Init(InitMessage {
                topic: Some(topic.clone()),
                partition: Some(partition),
                ack_interval: 1,
                follower_broker: String::new(),
                publisher_name: PUBLISHER_NAME.to_string(),
            })),
        };
        frames_tx
            .send(vec![init])
            .await
            .map_err(|_| SmqError::Protocol("publish request stream closed before init".into()))?;
        let mut client = channels.broker(leader)?;
        let mut acks = client
            .publish_message(ReceiverStream::new(frames_rx).flat_map(futures::stream::iter))
            .await
            .map_err(|s| SmqError::rpc("PublishMessage", leader, s))?
            .into_inner();
        match acks.next().await {
            Some(Ok(hello)) => check_response(&hello)?,
            Some(Err(s)) => return Err(SmqError::rpc("PublishMessage", leader, s)),
            None => {
                return Err(SmqError::Protocol(format!(
                    "publish stream to {leader} ended before its hello"
                )))
            }
        }
        debug!(leader, topic = %topic.name, range_start = partition.range_start, generation, "publish stream open");
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(64);
        let closed = Arc::new(Closed::default());
        let pending = Arc::new(Mutex::new(VecDeque::<Pending>::new()));
        let window = Arc::new(Semaphore::new(WINDOW));
        tokio::spawn(write_loop(
            jobs_rx,
            frames_tx,
            Arc::clone(&pending),
            Arc::clone(&window),
            Arc::clone(&closed),
        ));
        tokio::spawn(read_loop(
            acks,
            pending,
            window,
            Arc::clone(&closed),
            leader.to_string(),
            channels.stream_failed(),
        ));
        Ok(Self {
            jobs: jobs_tx,
            closed,
            generation,
        })
    }

    /// True once the stream failed or ended; the owner should open a new one.
    pub fn is_closed(&self) -> bool {
        self.closed.get() || self.jobs.is_closed()
    }

    /// A handle that resolves when this stream fails or ends, without holding the publisher:
    /// a broken stream usually means a broker restart, which the write-ahead log's keeper
    /// must act on before anything loads the partition on the new broker.
    pub fn close_signal(&self) -> CloseSignal {
        CloseSignal(Arc::clone(&self.closed))
    }

    /// Queues a batch; the receiver yields its offsets once every message is acknowledged.
    ///
    /// # Errors
    /// [`SmqError::Unavailable`] when the stream has already ended.
    pub async fn submit(&self, messages: Vec<DataMessage>) -> SmqResult<oneshot::Receiver<SmqResult<Acked>>> {
        let (done, rx) = oneshot::channel();
        if messages.is_empty() {
            return Err(SmqError::Protocol("empty publish batch".into()));
        }
        self.jobs
            .send(Job { messages, done })
            .await
            .map_err(|_| SmqError::Unavailable("publish stream closed".into()))?;
        Ok(rx)
    }
}

fn check_response(r: &PublishMessageResponse) -> SmqResult<()> {
    if r.error_code != 0 || !r.error.is_empty() {
        let kind = if r.error_code != 0 {
            SmqErrorKind::from_publish_code(r.error_code)
        } else if r.error.contains("leader") {
            SmqErrorKind::NotLeader
        } else if r.error.contains("not found") {
            SmqErrorKind::PartitionNotFound
        } else {
            SmqErrorKind::Other
        };
        return Err(SmqError::Server {
            op: "PublishMessage",
            code: r.error_code,
            message: r.error.clone(),
            kind,
        });
    }
    Ok(())
}

fn fail_all(pending: &Mutex<VecDeque<Pending>>, closed: &Closed, why: &SmqError) {
    closed.set();
    for p in pending.lock().drain(..) {
        let err = match why {
            SmqError::Server {
                op,
                code,
                message,
                kind,
            } => SmqError::Server {
                op,
                code: *code,
                message: message.clone(),
                kind: *kind,
            },
            other => SmqError::Unavailable(other.to_string()),
        };
        let _ = p.done.send(Err(err));
    }
}

async fn write_loop(
    mut jobs: mpsc::Receiver<Job>,
    frames: mpsc::Sender<Vec<PublishMessageRequest>>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    window: Arc<Semaphore>,
    closed: Arc<Closed>,
) {
    while let Some(job) = jobs.recv().await {
        if closed.get() {
            let _ = job
                .done
                .send(Err(SmqError::Unavailable("publish stream closed".into())));
            continue;
        }
        let count = job.messages.len();
        pending.lock().push_back(Pending {
            remaining: count,
            base: None,
            last: -1,
            contiguous: true,
            done: job.done,
        });
        // A batch goes out in chunks of at most the window, each handed to the request stream
        // at once (one wake-up per chunk, not per message).
        let mut messages = job.messages.into_iter().peekable();
        while messages.peek().is_some() {
            let chunk: Vec<PublishMessageRequest> = messages
                .by_ref()
                .take(WINDOW)
                .map(|m| PublishMessageRequest {
                    message: Some(Message::Data(m)),
                })
                .collect();
            let permits = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            let Ok(permit) = window.acquire_many(permits).await else {
                return;
            };
            permit.forget();
            if frames.send(chunk).await.is_err() {
                fail_all(
                    &pending,
                    &closed,
                    &SmqError::Unavailable("publish request stream closed".into()),
                );
                return;
            }
        }
    }
}

async fn read_loop(
    mut acks: tonic::Streaming<PublishMessageResponse>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    window: Arc<Semaphore>,
    closed: Arc<Closed>,
    leader: String,
    stream_failed: Arc<tokio::sync::Notify>,
) {
    let why = 'stream: loop {
        let first = acks.next().await;
        // Every ack already received is matched before the window reopens (one wake-up of
        // the writer per burst of acks, not per ack).
        let mut burst = 0usize;
        let mut next = first;
        let why = loop {
            let ack = match next {
                Some(Ok(ack)) => ack,
                Some(Err(s)) => break Some(SmqError::rpc("PublishMessage", &leader, s)),
                None => break Some(SmqError::Unavailable(format!("publish stream to {leader} ended"))),
            };
            if let Err(e) = check_response(&ack) {
                break Some(e);
            }
            if let Err(e) = match_ack(&pending, ack.assigned_offset) {
                break Some(e);
            }
            burst += 1;
            match acks.next().now_or_never() {
                Some(n) => next = n,
                None => break None,
            }
        };
        window.add_permits(burst);
        if let Some(why) = why {
            break 'stream why;
        }
    };
    warn!(leader = %leader, error = %why, "publish stream ended");
    stream_failed.notify_one();
    fail_all(&pending, &closed, &why);
    window.close();
}

/// Matches one ack to the oldest batch in flight and answers the batch once it is complete.
fn match_ack(pending: &Mutex<VecDeque<Pending>>, offset: i64) -> SmqResult<()> {
    let mut queue = pending.lock();
    let Some(front) = queue.front_mut() else {
        return Err(SmqError::Protocol(format!(
            "ack for offset {offset} with nothing in flight"
        )));
    };
    match front.base {
        None => front.base = Some(offset),
        Some(_) if offset != front.last + 1 => front.contiguous = false,
        Some(_) => {}
    }
    front.last = offset;
    front.remaining -= 1;
    if front.remaining == 0 {
        if let Some(done) = queue.pop_front() {
            let acked = Acked {
                base_offset: done.base.unwrap_or(offset),
                last_offset: done.last,
                contiguous: done.contiguous,
            };
            let _ = done.done.send(Ok(acked));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn close_signal_wakes_a_waiter_and_answers_at_once_after() {
        let closed = Arc::new(Closed::default());
        let signal = CloseSignal(Arc::clone(&closed));
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "woke before the stream closed");
        closed.set();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .expect("waiter ran");
        // A waiter that comes after the close must not wait for another notification.
        tokio::time::timeout(Duration::from_secs(5), signal.closed())
            .await
            .expect("resolved at once");
    }
}
