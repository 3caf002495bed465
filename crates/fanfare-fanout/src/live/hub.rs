//! The hub: one bus subscriber per pod, the channels its streams need, and the dispatcher
//! that hands each published update to the streams that carry its group.
//!
//! A channel is subscribed while at least one local stream needs it and unsubscribed after
//! the last one goes: one Redis subscription per group per pod, however many streams carry
//! the group. Each update is decoded once per pod and its bytes shared by every stream.
//! Channel changes are serialized (`control`); the registry the dispatcher reads is a plain
//! mutex held only to copy inbox pointers, never across an await.
//!
//! The hub also keeps the pod's time for its streams: one ticker asks a slice of them for a
//! heartbeat at each tick, so each stream gets one per heartbeat period without a timer of
//! its own, and at shutdown it asks every stream to end with a reconnect frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fanfare_bus::{BusError, BusEvent, GapReason, SubscriberHandle, UpdateBus};
use fanfare_core::ids::{EventSeq, GroupId, UserId};
use fanfare_core::time::timestamp_micros;
use fanfare_proto::common::v1::{Update, group_event, update};
use fanfare_proto::events::joined_user;
use fanfare_proto::redact::{carried_message, membership_subject};
use fanfare_proto::visibility;
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::cursor::Position;
use super::inbox::{AccessChange, Delivery, Envelope, Inbox, Subject, named_user};
use super::notify::{NOTIFICATIONS_CHANNEL, NotificationPage};
use super::reorder::Reorder;
use crate::metrics::{
    BAD_PAYLOADS_TOTAL, BUS_CHANNELS, BUS_GAPS_TOTAL, DISPATCHED_TOTAL, NOTIFICATIONS_DELIVERED_TOTAL,
    NOTIFICATIONS_DROPPED_TOTAL, STREAM_OVERFLOWS_TOTAL, STREAMS_OPEN,
};

/// What a stream listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    /// A group's updates.
    Group(GroupId),
    /// A user's join signals and fan-out notifications.
    User(UserId),
}

impl Topic {
    fn channel(self) -> String {
        match self {
            Self::Group(id) => fanfare_bus::group_channel(id.get()),
            Self::User(id) => fanfare_bus::user_channel(id.get()),
        }
    }
}

/// A stream's identity in the registry.
pub(crate) type StreamId = u64;

/// What operators can see of one open stream (`ListStreams`).
#[derive(Debug)]
pub(crate) struct StreamInfo {
    /// The stream's user.
    pub(crate) user: UserId,
    /// When it opened.
    pub(crate) opened_at: chrono::DateTime<chrono::Utc>,
    /// Per group, the last update delivered (updated once per batch of frames).
    pub(crate) positions: Mutex<std::collections::BTreeMap<GroupId, Position>>,
}

impl StreamInfo {
    /// The positions, locked; the stream replaces entries whole, so a panic elsewhere leaves
    /// them readable.
    pub(crate) fn positions(&self) -> MutexGuard<'_, std::collections::BTreeMap<GroupId, Position>> {
        self.positions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct StreamEntry {
    inbox: Arc<Inbox>,
    info: Arc<StreamInfo>,
}

#[derive(Default)]
struct Registry {
    topics: HashMap<Topic, Vec<(StreamId, Arc<Inbox>)>>,
    streams: HashMap<StreamId, StreamEntry>,
    /// Open streams per user.
    streams_per_user: HashMap<UserId, usize>,
    /// The pod is shutting down: every stream, even one registered from now on, is closed.
    closed: bool,
}

/// Why a stream could not start listening.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    /// The pod has not connected to the bus yet (Redis was down when it started).
    #[error("this pod is not connected to the update bus yet")]
    NotConnected,
    /// The bus refused or failed the subscription.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// First pause before the pod retries connecting its subscriber; doubles up to the max.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(100);
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(5);
/// The heartbeat period is cut into this many ticks; at each, the streams whose id falls in
/// that tick's slot are due, so heartbeats are spread over the period, not sent in bursts.
const HEARTBEAT_SLOTS: u64 = 16;

/// The pod's bus subscription and who listens to what.
pub(crate) struct Hub {
    registry: Mutex<Registry>,
    control: tokio::sync::Mutex<()>,
    subscriber: OnceLock<SubscriberHandle>,
    next_stream: AtomicU64,
}

impl Hub {
    /// Connects the pod's subscriber and dispatches until `shutdown`. When the bus is down,
    /// returns at once and keeps retrying in the background, so the pod starts without
    /// Redis and serves streams once it is there. Asks each stream for a heartbeat every
    /// `heartbeat`, and every stream to close at `shutdown`.
    pub(crate) async fn start(bus: Arc<dyn UpdateBus>, heartbeat: Duration, shutdown: CancellationToken) -> Arc<Self> {
        let hub = Arc::new(Self {
            registry: Mutex::new(Registry::default()),
            control: tokio::sync::Mutex::new(()),
            subscriber: OnceLock::new(),
            next_stream: AtomicU64::new(1),
        });
        let connected = match open_subscriber(bus.as_ref()).await {
            Ok(subscriber) => Some(subscriber),
            Err(error) => {
                tracing::warn!(error = ?error, "cannot subscribe to the update bus yet; retrying in the background");
                None
            }
        };
        if let Some(subscriber) = &connected {
            // The first set: nothing else sets it while this one is pending.
            let _ = hub.subscriber.set(subscriber.handle());
        }
        tokio::spawn(tick(Arc::clone(&hub), heartbeat, shutdown.clone()));
        let running = Arc::clone(&hub);
        tokio::spawn(async move {
            let subscriber = match connected {
                Some(subscriber) => subscriber,
                None => match connect(bus.as_ref(), &shutdown).await {
                    Some(subscriber) => subscriber,
                    None => return,
                },
            };
            // Already set when the first attempt connected; set here otherwise.
            let _ = running.subscriber.set(subscriber.handle());
            dispatch(running, subscriber, shutdown).await;
        });
        hub
    }

    /// Whether the pod's subscriber is connected (it may be reconnecting after that).
    pub(crate) fn is_connected(&self) -> bool {
        self.subscriber.get().is_some()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Each change of the registry is complete under the lock.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new stream with its inbox; it listens to nothing yet. `None` when its user
    /// already holds `max_per_user` streams here.
    pub(crate) fn open_stream(
        &self,
        inbox: Arc<Inbox>,
        info: Arc<StreamInfo>,
        max_per_user: usize,
    ) -> Option<StreamId> {
        let mut registry = self.registry();
        let open = registry.streams_per_user.entry(info.user).or_default();
        if *open >= max_per_user {
            return None;
        }
        *open += 1;
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        if registry.closed {
            inbox.close();
        }
        registry.streams.insert(id, StreamEntry { inbox, info });
        drop(registry);
        metrics::gauge!(STREAMS_OPEN).increment(1.0);
        Some(id)
    }

    /// Makes `stream` listen to `topics`, returning once every channel they need is
    /// subscribed: anything published after this returns reaches the stream's inbox.
    pub(crate) async fn listen(&self, stream: StreamId, topics: &[Topic]) -> Result<(), ListenError> {
        let subscriber = self.subscriber.get().ok_or(ListenError::NotConnected)?;
        let _serialized = self.control.lock().await;
        let new_channels: Vec<String> = {
            let mut registry = self.registry();
            let Some(inbox) = registry.streams.get(&stream).map(|entry| Arc::clone(&entry.inbox)) else {
                return Ok(());
            };
            let mut new_channels = Vec::new();
            for topic in topics {
                let listeners = registry.topics.entry(*topic).or_default();
                if listeners.is_empty() {
                    new_channels.push(topic.channel());
                }
                if !listeners.iter().any(|(id, _)| *id == stream) {
                    listeners.push((stream, Arc::clone(&inbox)));
                }
            }
            new_channels
        };
        if new_channels.is_empty() {
            return Ok(());
        }
        let subscribed = subscriber.subscribe_many(new_channels.iter().map(String::as_str)).await;
        if subscribed.is_err() {
            // Leave nothing half-registered: the stream fails, and so must its listening.
            let mut registry = self.registry();
            for topic in topics {
                remove_listener(&mut registry, *topic, stream);
            }
        } else {
            metrics::gauge!(BUS_CHANNELS).increment(new_channels.len() as f64);
        }
        Ok(subscribed?)
    }

    /// Stops `stream` listening to `topics`; channels nobody listens to any more are
    /// unsubscribed in the background.
    pub(crate) fn unlisten(self: &Arc<Self>, stream: StreamId, topics: &[Topic]) {
        let emptied: Vec<Topic> = {
            let mut registry = self.registry();
            topics.iter().copied().filter(|topic| remove_listener(&mut registry, *topic, stream)).collect()
        };
        self.unsubscribe_later(emptied);
    }

    /// Forgets `stream` entirely (its response stream was dropped).
    pub(crate) fn close_stream(self: &Arc<Self>, stream: StreamId) {
        let emptied: Vec<Topic> = {
            let mut registry = self.registry();
            let Some(entry) = registry.streams.remove(&stream) else {
                return;
            };
            if let Some(open) = registry.streams_per_user.get_mut(&entry.info.user) {
                *open -= 1;
                if *open == 0 {
                    registry.streams_per_user.remove(&entry.info.user);
                }
            }
            let topics: Vec<Topic> = registry
                .topics
                .iter()
                .filter(|(_, listeners)| listeners.iter().any(|(id, _)| *id == stream))
                .map(|(topic, _)| *topic)
                .collect();
            topics.into_iter().filter(|topic| remove_listener(&mut registry, *topic, stream)).collect()
        };
        metrics::gauge!(STREAMS_OPEN).decrement(1.0);
        self.unsubscribe_later(emptied);
    }

    /// Unsubscribes the channels of `topics` unless a stream listens to them again by then.
    fn unsubscribe_later(self: &Arc<Self>, topics: Vec<Topic>) {
        if topics.is_empty() {
            return;
        }
        let hub = Arc::clone(self);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let _serialized = hub.control.lock().await;
            let channels: Vec<String> = {
                let registry = hub.registry();
                topics
                    .iter()
                    .filter(|topic| !registry.topics.contains_key(topic))
                    .map(|topic| topic.channel())
                    .collect()
            };
            if channels.is_empty() {
                return;
            }
            let Some(subscriber) = hub.subscriber.get() else { return };
            match subscriber.unsubscribe_many(channels.iter().map(String::as_str)).await {
                Ok(()) => metrics::gauge!(BUS_CHANNELS).decrement(channels.len() as f64),
                Err(error) => tracing::warn!(error = ?error, "unsubscribing unused channels failed"),
            }
        });
    }

    /// How many streams are open on this pod.
    pub(crate) fn open_streams(&self) -> usize {
        self.registry().streams.len()
    }

    /// How many channels this pod's subscriber holds for streams.
    pub(crate) fn topics(&self) -> usize {
        self.registry().topics.len()
    }

    fn inboxes(&self, topic: Topic) -> Vec<Arc<Inbox>> {
        self.inboxes_of(std::iter::once(topic))
    }

    /// The inboxes listening to any of `topics`, under one hold of the registry lock (a
    /// notification page names a thousand users).
    fn inboxes_of(&self, topics: impl IntoIterator<Item = Topic>) -> Vec<Arc<Inbox>> {
        let registry = self.registry();
        topics
            .into_iter()
            .filter_map(|topic| registry.topics.get(&topic))
            .flat_map(|listeners| listeners.iter().map(|(_, inbox)| Arc::clone(inbox)))
            .collect()
    }

    fn every_inbox(&self) -> Vec<Arc<Inbox>> {
        self.registry().streams.values().map(|entry| Arc::clone(&entry.inbox)).collect()
    }

    /// The inboxes of the streams whose heartbeat falls in `slot`.
    fn inboxes_in_slot(&self, slot: u64) -> Vec<Arc<Inbox>> {
        let registry = self.registry();
        registry
            .streams
            .iter()
            .filter(|(id, _)| *id % HEARTBEAT_SLOTS == slot)
            .map(|(_, entry)| Arc::clone(&entry.inbox))
            .collect()
    }

    /// Closes every stream, and every one registered from now on.
    fn close_all(&self) {
        let inboxes = {
            let mut registry = self.registry();
            registry.closed = true;
            registry.streams.values().map(|entry| Arc::clone(&entry.inbox)).collect::<Vec<_>>()
        };
        for inbox in inboxes {
            inbox.close();
        }
    }

    /// What operators can see of `user`'s streams on this pod.
    pub(crate) fn streams_of(&self, user: UserId) -> Vec<Arc<StreamInfo>> {
        let registry = self.registry();
        let mut infos: Vec<Arc<StreamInfo>> =
            registry.streams.values().filter(|entry| entry.info.user == user).map(|e| Arc::clone(&e.info)).collect();
        infos.sort_by_key(|info| info.opened_at);
        infos
    }
}

/// Removes `stream` from `topic`'s listeners; true when the topic has none left (and was
/// removed).
fn remove_listener(registry: &mut Registry, topic: Topic, stream: StreamId) -> bool {
    let Some(listeners) = registry.topics.get_mut(&topic) else { return false };
    listeners.retain(|(id, _)| *id != stream);
    if listeners.is_empty() {
        registry.topics.remove(&topic);
        true
    } else {
        false
    }
}

/// The pod's clock for its streams: every `heartbeat` ÷ [`HEARTBEAT_SLOTS`], one slot of
/// streams is asked for a heartbeat; at `shutdown`, every stream is closed.
async fn tick(hub: Arc<Hub>, heartbeat: Duration, shutdown: CancellationToken) {
    let period = (heartbeat / HEARTBEAT_SLOTS as u32).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slot = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for inbox in hub.inboxes_in_slot(slot) {
            inbox.heartbeat_due();
        }
        slot = (slot + 1) % HEARTBEAT_SLOTS;
    }
    hub.close_all();
}

/// Opens the pod's subscriber and its notifications channel, retrying until the bus answers;
/// `None` if `shutdown` came first.
async fn connect(bus: &dyn UpdateBus, shutdown: &CancellationToken) -> Option<fanfare_bus::Subscriber> {
    let mut delay = CONNECT_RETRY_MIN;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(CONNECT_RETRY_MAX);
        match open_subscriber(bus).await {
            Ok(subscriber) => return Some(subscriber),
            Err(error) => tracing::warn!(error = ?error, retry_in = ?delay, "cannot subscribe to the update bus yet"),
        }
    }
}

/// The pod's subscriber, subscribed to the notifications channel.
async fn open_subscriber(bus: &dyn UpdateBus) -> Result<fanfare_bus::Subscriber, BusError> {
    let subscriber = bus.subscriber().await?;
    subscriber.subscribe(NOTIFICATIONS_CHANNEL).await?;
    Ok(subscriber)
}

/// How often the reorder hold forgets groups no stream of the pod listens to any more.
const REORDER_PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Receives every bus event of the pod and hands it on, until `shutdown`. A group's update
/// that arrives ahead of its predecessor is held briefly ([`Reorder`]).
async fn dispatch(hub: Arc<Hub>, mut subscriber: fanfare_bus::Subscriber, shutdown: CancellationToken) {
    let mut reorder: Reorder<Arc<Envelope>> = Reorder::default();
    let mut pruned_at = tokio::time::Instant::now();
    loop {
        let deadline = reorder.next_deadline();
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = subscriber.recv() => event,
            () = sleep_until(deadline) => {
                for envelope in reorder.expired(tokio::time::Instant::now()) {
                    deliver(&hub, &envelope);
                }
                continue;
            }
        };
        let Some(event) = event else {
            tracing::error!("the update bus subscriber stopped; live delivery is down on this pod");
            return;
        };
        match event {
            BusEvent::Message { channel, payload } => {
                // Only channels this pod subscribed to arrive: their ids are valid ones.
                if let Some(group_id) = fanfare_bus::group_id_from_channel(&channel).map(GroupId::from_trusted) {
                    let Some(envelope) = envelope(group_id, payload) else { continue };
                    let event_seq = envelope.event_seq;
                    let now = tokio::time::Instant::now();
                    for ready in reorder.accept(group_id, event_seq, Arc::new(envelope), now) {
                        deliver(&hub, &ready);
                    }
                } else {
                    dispatch_message(&hub, &channel, payload);
                }
            }
            BusEvent::Gap { reason: GapReason::Disconnected } => {
                metrics::counter!(BUS_GAPS_TOTAL, "reason" => "disconnected").increment(1);
                tracing::warn!("update bus disconnected; streams are repaired when it is back");
                for envelope in reorder.reset() {
                    deliver(&hub, &envelope);
                }
            }
            BusEvent::Gap { reason: GapReason::Lagged } => {
                metrics::counter!(BUS_GAPS_TOTAL, "reason" => "lagged").increment(1);
                for envelope in reorder.reset() {
                    deliver(&hub, &envelope);
                }
                for inbox in hub.every_inbox() {
                    inbox.repair_all();
                }
            }
            BusEvent::Resumed => {
                tracing::info!("update bus resumed; repairing every stream");
                for inbox in hub.every_inbox() {
                    inbox.repair_all();
                }
            }
        }
        if pruned_at.elapsed() >= REORDER_PRUNE_INTERVAL {
            pruned_at = tokio::time::Instant::now();
            reorder.retain(|group| !hub.inboxes(Topic::Group(group)).is_empty());
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Hands a group's update to every local stream that carries the group.
fn deliver(hub: &Hub, envelope: &Arc<Envelope>) {
    let inboxes = hub.inboxes(Topic::Group(envelope.group_id));
    let mut overflowed = 0u64;
    for inbox in &inboxes {
        if !inbox.push(Delivery::Update(Arc::clone(envelope))) {
            overflowed += 1;
        }
    }
    metrics::counter!(DISPATCHED_TOTAL).increment(inboxes.len() as u64);
    if overflowed > 0 {
        metrics::counter!(STREAM_OVERFLOWS_TOTAL).increment(overflowed);
    }
}

/// Hands an update of a user channel or the notifications channel to the streams it is for.
fn dispatch_message(hub: &Hub, channel: &str, payload: Bytes) {
    if let Some(user_id) = fanfare_bus::user_id_from_channel(channel) {
        let Ok(update) = Update::decode(payload.as_ref()) else {
            tracing::warn!(channel, "undecodable update on a user channel");
            return;
        };
        if joined_user(&update) == Some(user_id) {
            // Published by the messages service from its log, where only valid ids are written.
            let joined = Delivery::Joined {
                group_id: GroupId::from_trusted(update.group_id),
                event_seq: EventSeq::from_trusted(update.event_seq),
            };
            for inbox in hub.inboxes(Topic::User(UserId::from_trusted(user_id))) {
                inbox.push(joined.clone());
            }
        }
    } else if channel == NOTIFICATIONS_CHANNEL {
        let Ok(page) = NotificationPage::decode(payload.as_ref()) else {
            tracing::warn!("undecodable notification page");
            return;
        };
        let page = Arc::new(page);
        let (mut delivered, mut dropped) = (0u64, 0u64);
        let followers = page.follower_user_ids.iter().filter_map(|follower| named_user(*follower)).map(Topic::User);
        for inbox in hub.inboxes_of(followers) {
            if inbox.push(Delivery::Notification(Arc::clone(&page))) {
                delivered += 1;
            } else {
                dropped += 1;
            }
        }
        metrics::counter!(NOTIFICATIONS_DELIVERED_TOTAL).increment(delivered);
        if dropped > 0 {
            // Best effort: the push stream holds every notification.
            metrics::counter!(NOTIFICATIONS_DROPPED_TOTAL).increment(dropped);
        }
    }
}

/// Decodes what streams need of an update published on `group_id`'s channel.
fn envelope(group_id: GroupId, bytes: Bytes) -> Option<Envelope> {
    let update = match Update::decode(bytes.as_ref()) {
        Ok(update) if update.group_id == group_id.get() && update.event_seq > 0 => update,
        Ok(_) | Err(_) => {
            // A stream would repair the hole this leaves from the log at the next update.
            tracing::warn!(group_id = %group_id, "undecodable or mismatched update on a group channel; dropped");
            metrics::counter!(BAD_PAYLOADS_TOTAL).increment(1);
            return None;
        }
    };
    // The messages service publishes from its log, where only valid ids are written.
    Some(Envelope {
        group_id,
        event_seq: EventSeq::from_trusted(update.event_seq),
        entry_token: update.entry_token,
        previous_entry_token: update.previous_entry_token,
        ended_membership_of: ended_membership(&update),
        message_created_micros: carried_message(&update)
            .and_then(|message| message.created_at.as_ref())
            .map(timestamp_micros),
        member_subject: membership_subject(&update).map(Subject::from_raw),
        access_change: access_change(&update),
        redacted: OnceLock::new(),
        bytes,
    })
}

/// How `update` changes who sees history from before their join, if it does. (An ownership
/// transfer leaves the previous owner an admin: only the new owner's standing changes.)
pub(crate) fn access_change(update: &Update) -> Option<AccessChange> {
    let Some(update::Change::GroupEvent(event)) = &update.change else { return None };
    match event.change.as_ref()? {
        group_event::Change::GroupSettingsChanged(settings) => {
            Some(AccessChange::HistoryVisible(settings.history_visible_to_new_members))
        }
        group_event::Change::MemberRoleChanged(changed) => {
            // A role change of nobody named (a redacted update) changes no reader's standing.
            let user = named_user(changed.user_id)?;
            Some(AccessChange::Moderates { user, moderates: visibility::moderates(changed.role()) })
        }
        group_event::Change::OwnershipTransferred(transferred) => {
            Some(AccessChange::Moderates { user: named_user(transferred.new_owner_user_id)?, moderates: true })
        }
        _ => None,
    }
}

/// The user whose membership `update` ended, if it did.
pub(crate) fn ended_membership(update: &Update) -> Option<UserId> {
    let Some(update::Change::GroupEvent(event)) = &update.change else { return None };
    let user = match event.change.as_ref()? {
        group_event::Change::MemberLeft(left) => left.user_id,
        group_event::Change::MemberRemoved(removed) => removed.user_id,
        group_event::Change::MemberBanned(banned) if banned.was_member => banned.user_id,
        _ => return None,
    };
    // A redacted update names nobody: it ends no reader's membership they could be told of.
    named_user(user)
}
