//! The in-memory [`NotificationSink`], for `fanfare dev` and fast tests: the entries in a
//! list and the page markers in a map behind one mutex, which makes each page's append
//! atomic as the Redis script is. Markers never expire here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use fanfare_core::ids::UserId;

use super::{JobRef, NotificationSink, PageAppend, PushEntry, SinkError, page_marker_key};
use crate::follows::domain::FollowKey;

/// The stream name markers are keyed under (they never leave this process).
const STREAM: &str = "memory";

/// A [`NotificationSink`] in memory; clones share the same entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryNotificationSink {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<PushEntry>,
    /// (end, count) by page marker key.
    markers: HashMap<String, (FollowKey, u64)>,
}

impl MemoryNotificationSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is complete before the lock is released: a poisoned lock holds
        // consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every entry appended so far, oldest first (for tests).
    #[cfg(feature = "testing")]
    pub fn entries(&self) -> Vec<PushEntry> {
        self.lock().entries.clone()
    }
}

#[async_trait]
impl NotificationSink for MemoryNotificationSink {
    async fn append_page(
        &self,
        job: &JobRef,
        start: Option<FollowKey>,
        end: FollowKey,
        followers: &[UserId],
    ) -> Result<PageAppend, SinkError> {
        debug_assert!(!followers.is_empty(), "pages hold at least one follower");
        let marker = page_marker_key(STREAM, job.id, start);
        let mut state = self.lock();
        if let Some(&(end, count)) = state.markers.get(&marker) {
            return Ok(PageAppend { end, count, replayed: true });
        }
        state.entries.extend(followers.iter().map(|&follower| PushEntry::new(job, follower)));
        let count = followers.len() as u64;
        state.markers.insert(marker, (end, count));
        Ok(PageAppend { end, count, replayed: false })
    }
}
