//! Invites: created, read, revoked, and redeemed (a join that uses the invite up).

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;

use super::joins::{add_members_to_locked, single_membership};
use super::locking::{GroupLock, lock_group};
use super::rows::{During as _, InviteRow, connection, select_invite};
use crate::domain::{Invite, InviteCode, JoinMethod, MembershipLimits};
use crate::store::{Redemption, StoreError, StoreResult};

pub(super) async fn create_invite(pool: &Pool, invite: Invite) -> StoreResult<Invite> {
    let invite = Invite {
        created_at: stored_time(invite.created_at),
        expires_at: stored_time(invite.expires_at),
        revoked_at: invite.revoked_at.map(stored_time),
        ..invite
    };
    let mut tx = pool.begin().await.during("starting a transaction")?;
    lock_group(&mut tx, invite.group_id, GroupLock::Share).await?.ensure_active()?;
    sqlx::query(
        "INSERT INTO groups.invites (code, group_id, created_by, created_at, expires_at, max_uses, \
         use_count, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(invite.code.as_str())
    .bind(invite.group_id.get())
    .bind(invite.created_by.get())
    .bind(invite.created_at)
    .bind(invite.expires_at)
    .bind(i32::try_from(invite.max_uses).unwrap_or(i32::MAX))
    .bind(i32::try_from(invite.use_count).unwrap_or(i32::MAX))
    .bind(invite.revoked_at)
    .execute(&mut *tx)
    .await
    .during("storing an invite")?;
    tx.commit().await.during("committing an invite")?;
    Ok(invite)
}

pub(super) async fn get_invite(pool: &Pool, code: &InviteCode) -> StoreResult<Option<Invite>> {
    let row: Option<InviteRow> = sqlx::query_as(select_invite!("WHERE code = $1"))
        .bind(code.as_str())
        .fetch_optional(&mut *connection(pool).await?)
        .await
        .during("reading an invite")?;
    row.map(InviteRow::into_invite).transpose()
}

pub(super) async fn revoke_invite(pool: &Pool, code: &InviteCode, now: DateTime<Utc>) -> StoreResult<Invite> {
    let row: Option<InviteRow> = sqlx::query_as(
        "UPDATE groups.invites SET revoked_at = COALESCE(revoked_at, $2) WHERE code = $1 \
         RETURNING code, group_id, created_by, created_at, expires_at, max_uses, use_count, revoked_at",
    )
    .bind(code.as_str())
    .bind(stored_time(now))
    .fetch_optional(&mut *connection(pool).await?)
    .await
    .during("revoking an invite")?;
    row.ok_or(StoreError::InviteNotFound)?.into_invite()
}

pub(super) async fn redeem_invite(
    pool: &Pool,
    code: &InviteCode,
    user: UserId,
    limits: MembershipLimits,
    now: DateTime<Utc>,
) -> StoreResult<Redemption> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    // The group row is locked before the invite row (see the module docs), so first
    // find out which group the code opens.
    let group_id: Option<i64> = sqlx::query_scalar("SELECT group_id FROM groups.invites WHERE code = $1")
        .bind(code.as_str())
        .fetch_optional(&mut *tx)
        .await
        .during("reading an invite")?;
    let group = GroupId::from_trusted(group_id.ok_or(StoreError::InviteNotFound)?);
    let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
    let row: InviteRow = sqlx::query_as(select_invite!("WHERE code = $1 FOR UPDATE"))
        .bind(code.as_str())
        .fetch_one(&mut *tx)
        .await
        .during("locking an invite")?;
    let invite = row.into_invite()?;
    if invite.revoked_at.is_some() {
        return Err(StoreError::InviteRevoked);
    }
    if invite.expires_at <= now {
        return Err(StoreError::InviteExpired(invite.expires_at));
    }
    if invite.max_uses > 0 && invite.use_count >= invite.max_uses {
        return Err(StoreError::InviteExhausted(invite.max_uses));
    }
    locked.ensure_active()?;
    let added = add_members_to_locked(&mut tx, &locked, &[user], JoinMethod::Invite, limits, user, now).await?;
    let (membership, joined) = single_membership(added)?;
    if !joined {
        return Ok(Redemption::AlreadyMember(membership));
    }
    sqlx::query("UPDATE groups.invites SET use_count = use_count + 1 WHERE code = $1")
        .bind(code.as_str())
        .execute(&mut *tx)
        .await
        .during("using an invite")?;
    tx.commit().await.during("committing a redemption")?;
    Ok(Redemption::Joined(membership))
}
