//! One user's live stream: the groups it carries, how far each has been delivered, and the
//! loop that turns inbox deliveries into frames.
//!
//! Per group the stream keeps the last delivered event_seq and delivers only its successor.
//! A duplicate (a re-published or already repaired update) is skipped; a jump (a lost
//! publish, an overflowed inbox, a bus outage) is repaired from the messages service's log
//! before anything later of that group goes out. So the client sees each group's updates
//! in order, with no hole and no duplicate, whatever the bus did.
//!
//! The stream also keeps the last delivered update's entry token. An update that links to
//! another token (or repeats the position with another token) comes from a log that went
//! back and issued positions again (a restore, an asynchronous failover): the group is read
//! back from the log with the token, the messages service answers "resync", and the client
//! gets a resync frame instead of a second history under the same seqs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare_core::ids::{EventSeq, GroupId, UserId};
use fanfare_proto::common::v1::ResyncReason;
use fanfare_proto::fanout::v1::{
    FanoutJobKind, GroupPosition, GroupResync, Heartbeat, MembershipChange, MembershipChangeKind, Notification,
    Reconnect,
};
use fanfare_proto::frame::{EncodedUpdates, Frame, SubscribeResponse};
use fanfare_proto::messages::v1::get_updates_response;
use futures::Stream;
use prost::Message;
use tonic::{Code, Status};

use super::cursor::{self, Position};
use super::hub::{Hub, StreamId, StreamInfo, Topic, access_change, ended_membership};
use super::inbox::{AccessChange, Delivery, Envelope, Flags, Inbox, Subject};
use super::notify::NotificationPage;
use super::upstream::{Access, Upstream};
use crate::error::{FanoutError, FanoutResult};
use crate::metrics::{CATCH_UP_LIMITED_TOTAL, GAP_REPAIRS_TOTAL};

/// Deliveries taken from the inbox at once; they may share one frame.
const MAX_TAKE: usize = 64;
/// Attempts of one call to another service before the stream gives up and asks the client
/// to reconnect.
const UPSTREAM_ATTEMPTS: u32 = 4;
/// First pause between attempts; doubles each time.
const UPSTREAM_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Settings every stream of a pod shares.
pub(crate) struct StreamSettings {
    pub(crate) backfill_page_size: i32,
    pub(crate) max_groups: usize,
    pub(crate) reconnect_after_ms: u32,
    pub(crate) queue_capacity: usize,
    pub(crate) max_streams_per_user: usize,
    /// Catch-up rounds one stream may make, sustained and in a burst; `None` for no limit.
    pub(crate) catch_up_rounds: Option<governor::Quota>,
    /// [`DELIVERIES_TOTAL`](crate::metrics::DELIVERIES_TOTAL).
    pub(crate) deliveries: metrics::Counter,
}

/// A stream's position per group, from the request.
pub(crate) type Resume = BTreeMap<GroupId, Position>;

/// Why processing stopped the stream.
enum Stop {
    /// Another service failed past the retries, or the stream keeps falling behind: the
    /// client should reconnect later.
    Upstream(FanoutError),
}

/// A delivery that needs another service before anything after it of its stream goes out.
enum Blocked {
    /// An update skipped ahead of the group's position: catch the group up from the log.
    Jump(GroupId),
    /// An update contradicts the entry token of the group's position: the log went back.
    /// Read it from the log with the token (which answers with a resync).
    Reissued(GroupId),
    /// The user joined a group: start carrying it, replaying from the join.
    Join { group_id: GroupId, event_seq: EventSeq },
}

/// A taken-deliveries buffer that grew past this is dropped after use, so a burst does not
/// pin memory on an idle stream.
const RETAINED_TAKE: usize = 8;

/// One open stream.
pub(crate) struct LiveStream {
    user: UserId,
    id: StreamId,
    hub: Arc<Hub>,
    upstream: Upstream,
    inbox: Arc<Inbox>,
    settings: Arc<StreamSettings>,
    /// Carried groups → the last update delivered.
    groups: BTreeMap<GroupId, Position>,
    /// The operators' view of `groups`, brought up to date after each batch.
    info: Arc<StreamInfo>,
    /// Groups to catch up from the log before the next delivery.
    to_repair: BTreeSet<GroupId>,
    pending: VecDeque<SubscribeResponse>,
    /// The buffer deliveries are taken into, kept between takes.
    taken: Vec<Delivery>,
    /// Groups whose position changed since the operators' copy in `info` was updated.
    touched: Vec<GroupId>,
    /// Per carried group, what of it the user sees whole (history from before their join,
    /// other members); kept up to date by the group's own updates (settings, roles) as they
    /// are delivered.
    access: HashMap<GroupId, Access>,
    /// Whether any carried group hides anything from this user (most carry none: then no
    /// delivery looks at `access`).
    any_hidden: bool,
    /// Catch-up rounds (a bus gap, an overflowed inbox, a skipped-ahead update) left to this
    /// stream; `None` without a limit. A consumer that keeps falling behind is asked to
    /// reconnect rather than catching up from the log without end.
    catch_up_rounds: Option<governor::DefaultDirectRateLimiter>,
    finished: bool,
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        self.hub.close_stream(self.id);
    }
}

impl LiveStream {
    /// Opens `user`'s stream: listens to their user channel and every group they belong
    /// to, then settles where each group starts (the resume position, or the latest). The
    /// hub asks it for heartbeats and, at shutdown, to end with a reconnect frame.
    pub(crate) async fn open(
        user: UserId,
        resume: Resume,
        hub: Arc<Hub>,
        upstream: Upstream,
        settings: Arc<StreamSettings>,
    ) -> FanoutResult<Self> {
        let inbox = Inbox::new(settings.queue_capacity);
        let catch_up_rounds = settings.catch_up_rounds.map(governor::RateLimiter::direct);
        let info = Arc::new(StreamInfo { user, opened_at: chrono::Utc::now(), positions: Default::default() });
        let Some(id) = hub.open_stream(Arc::clone(&inbox), Arc::clone(&info), settings.max_streams_per_user) else {
            return Err(FanoutError::TooManyStreams { user, max: settings.max_streams_per_user });
        };
        let mut stream = Self {
            user,
            id,
            hub,
            upstream,
            inbox,
            settings,
            groups: BTreeMap::new(),
            info,
            to_repair: BTreeSet::new(),
            pending: VecDeque::new(),
            taken: Vec::new(),
            touched: Vec::new(),
            access: HashMap::new(),
            any_hidden: false,
            catch_up_rounds,
            finished: false,
        };
        // The user channel first: a group joined from here on is signalled, one joined
        // before is in the listing below.
        stream.listen(&[Topic::User(user)]).await?;
        let listed = stream.upstream.user_groups(user, stream.settings.max_groups).await?;
        let groups: Vec<GroupId> = listed.iter().map(|(group, _)| *group).collect();
        stream.access.extend(listed);
        stream.refresh_hidden();
        stream.listen(&groups.iter().map(|group| Topic::Group(*group)).collect::<Vec<_>>()).await?;
        for group in &groups {
            if let Some(position) = resume.get(group) {
                stream.groups.insert(*group, *position);
                stream.to_repair.insert(*group);
            }
        }
        let fresh: Vec<GroupId> = groups.iter().copied().filter(|group| !resume.contains_key(group)).collect();
        let latest = stream.latest_of(&fresh).await?;
        stream.groups.extend(latest);
        // Positions of groups the user no longer belongs to: say the stream stops them.
        for (group, position) in &resume {
            if !stream.groups.contains_key(group) {
                stream.pending.push_back(membership_frame(*group, MembershipChangeKind::Stopped, position.event_seq));
            }
        }
        let first = stream.heartbeat_frame();
        stream.pending.push_front(first);
        // The operators' first copy is whole; later ones follow what changed.
        stream.info.positions().clone_from(&stream.groups);
        Ok(stream)
    }

    async fn listen(&self, topics: &[Topic]) -> FanoutResult<()> {
        self.hub.listen(self.id, topics).await.map_err(|error| FanoutError::BusUnavailable(error.to_string()))
    }

    /// The latest update of each of `groups`, a few calls at a time.
    async fn latest_of(&self, groups: &[GroupId]) -> FanoutResult<Vec<(GroupId, Position)>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(groups.iter().copied())
            .map(|group| async move {
                let latest = with_retries(|| self.upstream.latest(self.user, group)).await?;
                Ok::<_, FanoutError>((group, latest))
            })
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// The frames of this stream, ending after a reconnect frame or an error.
    pub(crate) fn into_frames(self) -> impl Stream<Item = Result<SubscribeResponse, Status>> + Send + 'static {
        futures::stream::unfold(self, |mut stream| async move {
            let frame = stream.next_frame().await?;
            Some((frame, stream))
        })
    }

    /// The next frame to send, waiting for one; `None` once the stream is over.
    async fn next_frame(&mut self) -> Option<Result<SubscribeResponse, Status>> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(Ok(frame));
            }
            if self.finished {
                return None;
            }
            let mut taken = std::mem::take(&mut self.taken);
            let flags = self.inbox.take(MAX_TAKE, &mut taken);
            if flags.closing {
                self.finished = true;
                return Some(Ok(self.reconnect_frame("the server is shutting down")));
            }
            let heartbeat = flags.heartbeat;
            let processed = if flags.needs_upstream() || !self.to_repair.is_empty() {
                // Boxed: the rarely used catch-up path must not size every idle stream.
                Some(Box::pin(self.process(flags, &taken, 0, None)).await)
            } else if !taken.is_empty() {
                // The common case, with no call to another service and nothing boxed.
                let (mut next, mut batch) = (0, Vec::new());
                let blocked = self.deliver_ready(&taken, &mut next, &mut batch);
                self.flush(&mut batch);
                Some(match blocked {
                    None => Ok(()),
                    Some(blocked) => Box::pin(self.process(Flags::default(), &taken, next, Some(blocked))).await,
                })
            } else {
                None
            };
            taken.clear();
            if taken.capacity() <= RETAINED_TAKE {
                self.taken = taken;
            }
            // Nothing was taken: wait for the hub. Otherwise look again, the inbox may hold more.
            let idle = processed.is_none() && !heartbeat;
            if let Some(processed) = processed {
                self.publish_positions();
                if let Err(Stop::Upstream(error)) = processed {
                    let status = Status::from(error);
                    tracing::warn!(user = %self.user, error = %status, "stream could not catch up; asking to reconnect");
                    self.finished = true;
                    let reason = format!("catching up failed ({}); reconnect with the cursor", status.message());
                    self.pending.push_back(self.reconnect_frame(&reason));
                    continue;
                }
            }
            if heartbeat {
                let frame = self.heartbeat_frame();
                self.pending.push_back(frame);
            }
            if idle {
                self.inbox.wait().await;
            }
        }
    }

    /// Delivers `taken[*next..]` in order as long as nothing needs another service: queues
    /// in-order updates in `batch` (skipping duplicates and groups not carried), frames
    /// notifications, stops a group whose last update ended the user's membership. Returns
    /// at the first delivery that needs another service, with `*next` past it.
    fn deliver_ready(&mut self, taken: &[Delivery], next: &mut usize, batch: &mut Vec<Bytes>) -> Option<Blocked> {
        while let Some(delivery) = taken.get(*next) {
            *next += 1;
            match delivery {
                Delivery::Update(envelope) => {
                    let Some(&delivered) = self.groups.get(&envelope.group_id) else { continue };
                    if envelope.event_seq <= delivered.event_seq {
                        // A repeat, unless it names the position with another token.
                        if envelope.event_seq == delivered.event_seq && delivered.contradicted_by(envelope.entry_token)
                        {
                            return Some(Blocked::Reissued(envelope.group_id));
                        }
                        continue;
                    }
                    if envelope.event_seq > delivered.event_seq.next() {
                        return Some(Blocked::Jump(envelope.group_id));
                    }
                    if delivered.contradicted_by(envelope.previous_entry_token) {
                        return Some(Blocked::Reissued(envelope.group_id));
                    }
                    batch.push(self.visible_bytes(envelope).clone());
                    let position = Position { event_seq: envelope.event_seq, entry_token: envelope.entry_token };
                    self.set_position(envelope.group_id, position);
                    if let Some(change) = envelope.access_change {
                        self.apply_access_change(envelope.group_id, change);
                    }
                    if envelope.ended_membership_of == Some(self.user) {
                        self.flush(batch);
                        self.stop_group(envelope.group_id, envelope.event_seq);
                    }
                }
                Delivery::Joined { group_id, event_seq } => {
                    return Some(Blocked::Join { group_id: *group_id, event_seq: *event_seq });
                }
                Delivery::Notification(page) => {
                    self.flush(batch);
                    self.pending.push_back(notification_frame(page, self.user));
                }
            }
        }
        None
    }

    /// Turns `taken[next..]` into frames after what `flags` asks for (catch-ups, a
    /// re-listing) and what `blocked` needs, calling the other services where needed.
    async fn process(
        &mut self,
        flags: Flags,
        taken: &[Delivery],
        mut next: usize,
        mut blocked: Option<Blocked>,
    ) -> Result<(), Stop> {
        let repairs = flags.repair_all
            || !flags.dirty.is_empty()
            || matches!(blocked, Some(Blocked::Jump(_) | Blocked::Reissued(_)));
        if repairs
            && let Some(rounds) = &self.catch_up_rounds
            && rounds.check().is_err()
        {
            metrics::counter!(CATCH_UP_LIMITED_TOTAL).increment(1);
            return Err(Stop::Upstream(FanoutError::FallingBehind));
        }
        if flags.relist {
            self.relist().await?;
        }
        if flags.repair_all {
            self.to_repair.extend(self.groups.keys().copied());
            metrics::counter!(GAP_REPAIRS_TOTAL, "reason" => "bus").increment(1);
        }
        if !flags.dirty.is_empty() {
            metrics::counter!(GAP_REPAIRS_TOTAL, "reason" => "overflow").increment(1);
        }
        self.to_repair.extend(flags.dirty);
        while let Some(group) = self.to_repair.pop_first() {
            self.backfill(group).await?;
        }
        let mut batch = Vec::new();
        loop {
            match blocked {
                Some(Blocked::Jump(group)) => {
                    metrics::counter!(GAP_REPAIRS_TOTAL, "reason" => "jump").increment(1);
                    self.backfill(group).await?;
                }
                Some(Blocked::Reissued(group)) => {
                    metrics::counter!(GAP_REPAIRS_TOTAL, "reason" => "log_reissued").increment(1);
                    self.backfill(group).await?;
                }
                Some(Blocked::Join { group_id, event_seq }) => {
                    self.join_group(group_id, Position::at(event_seq.previous())).await?;
                }
                None => {}
            }
            blocked = self.deliver_ready(taken, &mut next, &mut batch);
            self.flush(&mut batch);
            if blocked.is_none() {
                return Ok(());
            }
        }
    }

    /// Queues the collected updates as one frame.
    fn flush(&mut self, batch: &mut Vec<Bytes>) {
        if batch.is_empty() {
            return;
        }
        self.settings.deliveries.increment(batch.len() as u64);
        let updates = EncodedUpdates { updates: std::mem::take(batch) };
        self.pending.push_back(SubscribeResponse::new(Frame::Updates(updates)));
    }

    /// Catches `group` up from the log, up to its latest update.
    async fn backfill(&mut self, group: GroupId) -> Result<(), Stop> {
        let user = self.user;
        let page_size = self.settings.backfill_page_size;
        loop {
            let Some(&after) = self.groups.get(&group) else { return Ok(()) };
            let read = with_retries(|| self.upstream.updates(user, group, after, page_size)).await;
            let page = match read {
                Ok(get_updates_response::Result::Page(page)) => page,
                Ok(get_updates_response::Result::ResyncRequired(resync)) => {
                    let latest = Position {
                        event_seq: EventSeq::from_trusted(resync.latest_event_seq),
                        entry_token: resync.latest_entry_token,
                    };
                    self.set_position(group, latest);
                    self.pending.push_back(SubscribeResponse::new(Frame::Resync(GroupResync {
                        group_id: group.get(),
                        latest_event_seq: resync.latest_event_seq,
                        oldest_retained_event_seq: resync.oldest_retained_event_seq,
                        instructions: resync_instructions(resync.reason()).to_owned(),
                        reason: resync.reason,
                    })));
                    return Ok(());
                }
                // No longer a member (or the group is gone): the stream stops carrying it.
                Err(error) if not_a_member(&error) => {
                    self.stop_group(group, after.event_seq);
                    return Ok(());
                }
                Err(error) => return Err(Stop::Upstream(error)),
            };
            let mut batch = Vec::with_capacity(page.updates.len());
            let mut last = after;
            for update in &page.updates {
                let event_seq = EventSeq::from_trusted(update.event_seq);
                if event_seq <= last.event_seq {
                    continue;
                }
                last = Position { event_seq, entry_token: update.entry_token };
                // Redacted by the messages service already; later live updates follow the
                // settings and roles this page passes.
                batch.push(Bytes::from(update.encode_to_vec()));
                if let Some(change) = access_change(update) {
                    self.apply_access_change(group, change);
                }
                if ended_membership(update) == Some(user) {
                    self.set_position(group, last);
                    self.flush(&mut batch);
                    self.stop_group(group, last.event_seq);
                    return Ok(());
                }
            }
            self.set_position(group, last);
            self.flush(&mut batch);
            if !page.has_more || last == after {
                return Ok(());
            }
        }
    }

    /// Starts carrying `group` after `after`: the user joined it (a join signal).
    async fn join_group(&mut self, group: GroupId, after: Position) -> Result<(), Stop> {
        if self.groups.contains_key(&group) {
            return Ok(());
        }
        let user = self.user;
        let access = match with_retries(|| self.upstream.access(user, group)).await {
            Ok(access) => access,
            // Already gone again (or the group is): nothing to carry.
            Err(error) if not_a_member(&error) => return Ok(()),
            Err(error) => return Err(Stop::Upstream(error)),
        };
        self.start_group(group, after, access).await
    }

    /// Starts carrying `group` after `after`, showing its history as `access` says.
    async fn start_group(&mut self, group: GroupId, after: Position, access: Access) -> Result<(), Stop> {
        if self.groups.contains_key(&group) {
            return Ok(());
        }
        if self.groups.len() >= self.settings.max_groups {
            tracing::warn!(user = %self.user, group = %group, "stream carries the most groups it may; not adding one");
            return Ok(());
        }
        self.listen(&[Topic::Group(group)]).await.map_err(Stop::Upstream)?;
        self.set_position(group, after);
        self.access.insert(group, access);
        self.refresh_hidden();
        self.pending.push_back(membership_frame(group, MembershipChangeKind::Started, after.event_seq));
        self.backfill(group).await
    }

    /// Stops carrying `group`; `event_seq` is the update that ended the membership.
    fn stop_group(&mut self, group: GroupId, event_seq: EventSeq) {
        self.groups.remove(&group);
        self.touched.push(group);
        self.access.remove(&group);
        self.refresh_hidden();
        self.to_repair.remove(&group);
        self.hub.unlisten(self.id, &[Topic::Group(group)]);
        self.pending.push_back(membership_frame(group, MembershipChangeKind::Stopped, event_seq));
    }

    /// Lists the user's groups again: starts the ones a lost join signal did not start
    /// (from their latest update), and repairs the ones the user may have left.
    async fn relist(&mut self) -> Result<(), Stop> {
        let (user, max) = (self.user, self.settings.max_groups);
        let listed: BTreeMap<GroupId, Access> =
            with_retries(|| self.upstream.user_groups(user, max)).await.map_err(Stop::Upstream)?.into_iter().collect();
        let gone: Vec<GroupId> = self.groups.keys().copied().filter(|group| !listed.contains_key(group)).collect();
        self.to_repair.extend(gone);
        let new: Vec<GroupId> = listed.keys().copied().filter(|group| !self.groups.contains_key(group)).collect();
        for (group, access) in &listed {
            if self.groups.contains_key(group) {
                self.access.insert(*group, *access);
            }
        }
        self.refresh_hidden();
        for (group, latest) in self.latest_of(&new).await.map_err(Stop::Upstream)? {
            self.start_group(group, latest, listed[&group]).await?;
        }
        Ok(())
    }

    /// `envelope` as this stream's user may see it (`GetUpdates` hides the same): without its
    /// message's content when the message is older than what the group lets them see;
    /// without its users when it is a membership event about someone else and the group hides
    /// its audience from them. Decided from what the stream already knows, with no lookup.
    fn visible_bytes<'a>(&self, envelope: &'a Envelope) -> &'a Bytes {
        if !self.any_hidden {
            return &envelope.bytes;
        }
        let Some(access) = self.access.get(&envelope.group_id) else { return &envelope.bytes };
        let old_message = match (envelope.message_created_micros, access.history_hidden_before()) {
            (Some(created), Some(before)) => created < before,
            _ => false,
        };
        let another_member = access.hides_audience()
            && envelope.member_subject.is_some_and(|subject| subject != Subject::Named(self.user));
        if old_message || another_member { envelope.redacted() } else { &envelope.bytes }
    }

    /// Follows a change of who sees `group`'s history, as the log delivers it.
    fn apply_access_change(&mut self, group: GroupId, change: AccessChange) {
        let Some(access) = self.access.get_mut(&group) else { return };
        match change {
            AccessChange::HistoryVisible(visible) => access.history_visible_to_new_members = visible,
            AccessChange::Moderates { user, moderates } if user == self.user => access.moderates = moderates,
            AccessChange::Moderates { .. } => {}
        }
        self.refresh_hidden();
    }

    fn refresh_hidden(&mut self) {
        self.any_hidden =
            self.access.values().any(|access| access.history_hidden_before().is_some() || access.hides_audience());
    }

    /// Records `position` as the last delivered update of `group`.
    fn set_position(&mut self, group: GroupId, position: Position) {
        self.groups.insert(group, position);
        self.touched.push(group);
    }

    /// Copies the positions that changed since the last call where operators can read them:
    /// the work follows what was delivered, not how many groups the stream carries.
    fn publish_positions(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let mut shown = self.info.positions();
        for group in self.touched.drain(..) {
            match self.groups.get(&group) {
                Some(position) => shown.insert(group, *position),
                None => shown.remove(&group),
            };
        }
        drop(shown);
        if self.touched.capacity() > RETAINED_TAKE {
            self.touched = Vec::new();
        }
    }

    fn positions(&self) -> Vec<GroupPosition> {
        self.groups.iter().map(|(group, position)| position.to_proto(*group)).collect()
    }

    fn heartbeat_frame(&self) -> SubscribeResponse {
        SubscribeResponse::new(Frame::Heartbeat(Heartbeat {
            positions: self.positions(),
            cursor: cursor::encode(&self.groups),
            sent_at: Some(fanfare_core::time::to_timestamp(chrono::Utc::now())),
        }))
    }

    fn reconnect_frame(&self, reason: &str) -> SubscribeResponse {
        SubscribeResponse::new(Frame::Reconnect(Reconnect {
            reason: reason.to_owned(),
            cursor: cursor::encode(&self.groups),
            retry_after_ms: i32::try_from(self.settings.reconnect_after_ms).unwrap_or(i32::MAX),
        }))
    }
}

/// What a resync frame tells the client to do, by why the group cannot go on.
fn resync_instructions(reason: ResyncReason) -> &'static str {
    match reason {
        ResyncReason::PastRetention => {
            "the log no longer holds what follows your position (it is past retention): reload the group's history \
             with ListMessages; this stream continues after latest_event_seq"
        }
        ResyncReason::LogWentBack | ResyncReason::LogReissued => {
            "the log went back (a restore or a failover) and no longer holds what this stream delivered after \
             latest_event_seq: drop what you hold of the group past it, reload its history with ListMessages; this \
             stream continues after latest_event_seq"
        }
        ResyncReason::Unspecified => {
            "the stream cannot continue from your position: reload the group's history with ListMessages; this \
             stream continues after latest_event_seq"
        }
    }
}

fn membership_frame(group: GroupId, kind: MembershipChangeKind, event_seq: EventSeq) -> SubscribeResponse {
    SubscribeResponse::new(Frame::MembershipChange(MembershipChange {
        group_id: group.get(),
        kind: kind.into(),
        event_seq: event_seq.get(),
    }))
}

fn notification_frame(page: &NotificationPage, user: UserId) -> SubscribeResponse {
    let kind = FanoutJobKind::try_from(page.kind).unwrap_or(FanoutJobKind::Unspecified);
    SubscribeResponse::new(Frame::Notification(Notification {
        job_id: page.job_id,
        creator_user_id: page.creator_user_id,
        kind: kind.into(),
        payload_ref: page.payload_ref.clone(),
        key: NotificationPage::key(page.job_id, user.get()),
    }))
}

/// Whether another service answered that the stream's user is not a member of the group
/// (any more), or that the group is gone: the stream stops (or never starts) carrying it.
fn not_a_member(error: &FanoutError) -> bool {
    matches!(error, FanoutError::Upstream(status) if matches!(status.code(), Code::PermissionDenied | Code::NotFound))
}

/// Runs `call` until it succeeds, fails for good, or has failed [`UPSTREAM_ATTEMPTS`] times
/// with another service's status worth retrying. Every call here is a read, so a broken
/// connection (tonic's `UNKNOWN` "transport error" when a connection dies under a call) is
/// retried too.
async fn with_retries<T, F, Fut>(mut call: F) -> FanoutResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = FanoutResult<T>>,
{
    let mut delay = UPSTREAM_RETRY_DELAY;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(FanoutError::Upstream(status))
                if attempt < UPSTREAM_ATTEMPTS
                    && (matches!(
                        status.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::ResourceExhausted
                            | Code::Aborted
                            | Code::Unknown
                    ) || fanfare_core::client::unprocessed(&status)) =>
            {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
