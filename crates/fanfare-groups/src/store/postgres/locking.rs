//! How a transaction takes the group row, first of the locks in the order the store's
//! module docs give.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use sqlx::PgConnection;

use super::rows::{During as _, stored_code};
use crate::domain::GroupKind;
use crate::store::{StoreError, StoreResult};

/// How a transaction holds the group row.
#[derive(Clone, Copy)]
pub(super) enum GroupLock {
    /// Membership changes: many may proceed at once; blocks settings changes, archiving,
    /// bans and transfers until they commit.
    Share,
    /// Settings, archiving and ownership: one at a time, after in-flight joins. Each of
    /// them then updates the group row.
    Exclusive,
    /// Bans: as `Exclusive`, and the lock itself writes a new version of the row (an
    /// update that changes nothing), since a ban changes no column of it. A
    /// single-statement join that waited for the ban then sees a newer row than its
    /// snapshot, whose bans table does not hold the ban yet, and starts again.
    ExclusiveNewVersion,
}

/// The columns of a locked group row the checks need.
#[derive(sqlx::FromRow)]
struct LockedGroupRow {
    id: i64,
    kind: i16,
    owner_id: i64,
    archived_at: Option<DateTime<Utc>>,
}

/// A group row locked by the transaction, with what the checks need of it.
pub(super) struct LockedGroup {
    pub(super) id: GroupId,
    pub(super) kind: GroupKind,
    pub(super) owner: UserId,
    archived: bool,
}

impl LockedGroup {
    /// Refuses a change to an archived group.
    pub(super) fn ensure_active(&self) -> StoreResult<()> {
        if self.archived { Err(StoreError::Archived(self.id)) } else { Ok(()) }
    }
}

/// Locks the group row as `lock` says; `GroupNotFound` when there is none.
pub(super) async fn lock_group(
    connection: &mut PgConnection,
    group: GroupId,
    lock: GroupLock,
) -> StoreResult<LockedGroup> {
    let sql = match lock {
        GroupLock::Share => "SELECT id, kind, owner_id, archived_at FROM groups.groups WHERE id = $1 FOR SHARE",
        GroupLock::Exclusive => {
            "SELECT id, kind, owner_id, archived_at FROM groups.groups WHERE id = $1 FOR NO KEY UPDATE"
        }
        // An UPDATE of non-key columns takes the same FOR NO KEY UPDATE lock.
        GroupLock::ExclusiveNewVersion => {
            "UPDATE groups.groups SET updated_at = updated_at WHERE id = $1 RETURNING id, kind, owner_id, archived_at"
        }
    };
    let row: Option<LockedGroupRow> =
        sqlx::query_as(sql).bind(group.get()).fetch_optional(&mut *connection).await.during("locking a group")?;
    let row = row.ok_or(StoreError::GroupNotFound(group))?;
    Ok(LockedGroup {
        id: GroupId::from_trusted(row.id),
        kind: stored_code(GroupKind::from_code(row.kind), "kind", row.kind)?,
        owner: UserId::from_trusted(row.owner_id),
        archived: row.archived_at.is_some(),
    })
}
