//! Group commit: concurrent writes are queued, gathered into batches and each batch is
//! applied in one transaction, then handed to the publisher.
//!
//! Every group belongs to one of `commit_workers` lanes (by its outbox lane), each with its
//! own queue and one worker: a group's batches commit one after another, so the worker can
//! hand each batch's updates to its lane's publisher in commit order. A batch is whatever
//! queued while the previous commit ran (up to `commit_batch_max`), so a lone write pays one
//! durable commit and no timer, and a busy lane fills its batches by itself. Throughput
//! grows with concurrency instead of being bound by one durable commit per message, and a
//! hot group's sequence counter is locked once per batch, not per update.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::CommitConfig;
use crate::publisher::Publisher;
use crate::store::{Applied, LogWrite, MessageStore, StoreError, WriteError};

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A rule refused this write; nothing was written for it.
    #[error(transparent)]
    Refused(#[from] WriteError),
    /// The store failed the batch; nothing of it was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue is full: the service is overloaded.
    #[error("too many writes are waiting to be committed")]
    Overloaded,
    /// The service is shutting down.
    #[error("the service is shutting down")]
    ShuttingDown,
}

struct Pending {
    write: LogWrite,
    reply: oneshot::Sender<Result<Applied, CommitError>>,
}

/// The handle services submit writes through.
#[derive(Clone)]
pub struct Committer {
    /// One queue per lane; a write goes to the lane of its group.
    lanes: Arc<[mpsc::Sender<Pending>]>,
    publisher: Arc<Publisher>,
}

impl Committer {
    /// Starts one worker per lane of `publisher`; they stop when `shutdown` is cancelled and
    /// their queues are drained, handing every committed batch to the publisher first.
    pub fn start(
        store: Arc<dyn MessageStore>,
        config: &CommitConfig,
        publisher: Arc<Publisher>,
        shutdown: CancellationToken,
    ) -> Self {
        let lane_count = publisher.lane_count();
        let queue_per_lane = (config.commit_queue / lane_count).max(1);
        let mut lanes = Vec::with_capacity(lane_count);
        for lane in 0..lane_count {
            let (queue, receiver) = mpsc::channel(queue_per_lane);
            let worker = Worker {
                lane,
                store: Arc::clone(&store),
                receiver,
                batch_max: config.commit_batch_max.max(1),
                batch_wait: config.batch_wait(),
                publisher: Arc::clone(&publisher),
            };
            tokio::spawn(worker.run(shutdown.clone()));
            lanes.push(queue);
        }
        Self { lanes: lanes.into(), publisher }
    }

    fn queue_of(&self, write: &LogWrite) -> &mpsc::Sender<Pending> {
        &self.lanes[self.publisher.lane_of(write.group())]
    }

    /// Commits one write, waiting for the batch it joins.
    pub async fn submit(&self, write: LogWrite) -> Result<Applied, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue_of(&write).try_send(Pending { write, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => CommitError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => CommitError::ShuttingDown,
        })?;
        answer.await.map_err(|_| CommitError::ShuttingDown)?
    }

    /// Commits several writes, each group's in order (a group's writes share a lane and join
    /// one batch unless it is full). Unlike [`Self::submit`], waits for room in the queue
    /// instead of refusing: it serves internal callers (the groups relay, the reaction
    /// coalescer) whose batches must go in whole.
    pub async fn submit_all(&self, writes: Vec<LogWrite>) -> Vec<Result<Applied, CommitError>> {
        let mut answers = Vec::with_capacity(writes.len());
        for write in writes {
            let (reply, answer) = oneshot::channel();
            let queue = self.queue_of(&write).clone();
            match queue.send(Pending { write, reply }).await {
                Ok(()) => answers.push(Ok(answer)),
                Err(_) => answers.push(Err(CommitError::ShuttingDown)),
            }
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Ok(answer) => answer.await.unwrap_or(Err(CommitError::ShuttingDown)),
                Err(error) => Err(error),
            });
        }
        results
    }
}

struct Worker {
    lane: usize,
    store: Arc<dyn MessageStore>,
    receiver: mpsc::Receiver<Pending>,
    batch_max: usize,
    /// Extra time the first write of a batch waits for company (zero by default: a batch
    /// is what queued during the previous commit).
    batch_wait: std::time::Duration,
    publisher: Arc<Publisher>,
}

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let batch = tokio::select! {
                batch = self.next_batch() => batch,
                () = shutdown.cancelled() => {
                    // Drain what is queued so no accepted write is left unanswered.
                    self.receiver.close();
                    self.next_batch().await
                }
            };
            if batch.is_empty() {
                tracing::debug!(lane = self.lane, "committer stopped");
                return;
            }
            self.commit(batch).await;
        }
    }

    /// Waits for one write, then takes what else is queued (and, with a batch wait, what
    /// arrives within it) until the batch is full. Empty only when the queue is closed and
    /// drained.
    async fn next_batch(&mut self) -> Vec<Pending> {
        let Some(first) = self.receiver.recv().await else { return Vec::new() };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        while batch.len() < self.batch_max {
            match self.receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) if self.batch_wait.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                    Ok(Some(pending)) => batch.push(pending),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        batch
    }

    async fn commit(&self, batch: Vec<Pending>) {
        let size = batch.len();
        let (writes, replies): (Vec<LogWrite>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.write, pending.reply)).unzip();
        let started = std::time::Instant::now();
        let outcome = self.store.apply(writes, fanfare_core::time::now()).await;
        metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::metrics::COMMIT_BATCH_SIZE).record(size as f64);
        match outcome {
            Ok(committed) => {
                debug_assert_eq!(committed.outcomes.len(), replies.len(), "one result per write");
                // Published in commit order: this lane's next batch commits after this call.
                self.publisher.committed(self.lane, committed.appended);
                for (reply, result) in replies.into_iter().zip(committed.outcomes) {
                    // A caller that went away no longer needs its answer.
                    let _ = reply.send(result.map_err(CommitError::Refused));
                }
            }
            Err(error) => {
                tracing::warn!(error = ?error, size, "commit batch failed");
                let message = format!("{error:#}");
                for reply in replies {
                    let copy = match &error {
                        StoreError::Unavailable(_) => StoreError::Unavailable(anyhow::anyhow!(message.clone())),
                        StoreError::Internal(_) => StoreError::Internal(anyhow::anyhow!(message.clone())),
                    };
                    let _ = reply.send(Err(CommitError::Store(copy)));
                }
            }
        }
    }
}
