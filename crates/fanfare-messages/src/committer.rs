//! Group commit: concurrent writes are queued, gathered into batches (up to
//! `commit_batch_max` writes, or whatever arrived within `commit_batch_wait_us` of the
//! first) and each batch is applied in one transaction by one of `commit_workers` workers.
//! Throughput then grows with concurrency instead of being bound by one durable commit per
//! message, and a hot group's sequence counter is locked once per batch, not per update.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::CommitConfig;
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
    queue: mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the workers; they stop when `shutdown` is cancelled and the queue is drained.
    /// `committed` is notified after every batch that wrote something (the outbox relay
    /// waits on it).
    pub fn start(
        store: Arc<dyn MessageStore>,
        config: &CommitConfig,
        committed: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(config.commit_queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for worker in 0..config.commit_workers.max(1) {
            let worker_state = Worker {
                store: Arc::clone(&store),
                receiver: Arc::clone(&receiver),
                batch_max: config.commit_batch_max.max(1),
                batch_wait: config.batch_wait(),
                committed: Arc::clone(&committed),
            };
            tokio::spawn(worker_state.run(worker, shutdown.clone()));
        }
        Self { queue }
    }

    /// Commits one write, waiting for the batch it joins.
    pub async fn submit(&self, write: LogWrite) -> Result<Applied, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Pending { write, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => CommitError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => CommitError::ShuttingDown,
        })?;
        answer.await.map_err(|_| CommitError::ShuttingDown)?
    }

    /// Commits several writes in order (they join one batch unless it is full). Unlike
    /// [`Self::submit`], waits for room in the queue instead of refusing: it serves internal
    /// callers (the groups relay, the reaction coalescer) whose batches must go in whole.
    pub async fn submit_all(&self, writes: Vec<LogWrite>) -> Vec<Result<Applied, CommitError>> {
        let mut answers = Vec::with_capacity(writes.len());
        for write in writes {
            let (reply, answer) = oneshot::channel();
            match self.queue.send(Pending { write, reply }).await {
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
    store: Arc<dyn MessageStore>,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    batch_max: usize,
    batch_wait: std::time::Duration,
    committed: Arc<Notify>,
}

impl Worker {
    async fn run(self, worker: usize, shutdown: CancellationToken) {
        loop {
            let batch = tokio::select! {
                batch = self.next_batch() => batch,
                () = shutdown.cancelled() => {
                    // Drain what is queued so no accepted write is left unanswered.
                    self.receiver.lock().await.close();
                    self.next_batch().await
                }
            };
            if batch.is_empty() {
                tracing::debug!(worker, "committer stopped");
                return;
            }
            self.commit(batch).await;
        }
    }

    /// Waits for one write, then gathers more until the batch is full or the wait is over.
    /// Empty only when the queue is closed and drained.
    async fn next_batch(&self) -> Vec<Pending> {
        let mut receiver = self.receiver.lock().await;
        let Some(first) = receiver.recv().await else { return Vec::new() };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        while batch.len() < self.batch_max {
            // Take what is already queued without waiting, then wait out the window.
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => match tokio::time::timeout_at(deadline, receiver.recv()).await {
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
        let outcome = self.store.apply(writes, Utc::now().trunc_subsecs(6)).await;
        metrics::histogram!("fanfare_messages_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("fanfare_messages_commit_batch_size").record(size as f64);
        match outcome {
            Ok(results) => {
                debug_assert_eq!(results.len(), replies.len(), "one result per write");
                self.committed.notify_one();
                for (reply, result) in replies.into_iter().zip(results) {
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
