//! The rules of the follow graph. Pure functions: the service asks them before it asks the
//! store to change anything.

use fanfare_core::ids::UserId;
use fanfare_core::validation::FieldViolation;

/// The request field naming the creator of Follow and Unfollow.
pub const CREATOR_FIELD: &str = "creator_user_id";

/// A user may follow (and so unfollow) anyone but themselves. Following oneself would put
/// creators in their own audience and count them among their own followers; refusing it as
/// bad input makes a caller's mix-up of ids visible instead of storing a meaningless edge.
pub fn check_follow(follower: UserId, creator: UserId) -> Result<(), FieldViolation> {
    if follower == creator {
        return Err(FieldViolation::new(
            CREATOR_FIELD,
            format!("must be another user than the caller (user {follower} cannot follow themselves)"),
        ));
    }
    Ok(())
}

/// The limit on how many creators one user may follow, from its configured value; 0 is
/// unlimited.
pub fn following_limit(configured: u64) -> Option<u64> {
    (configured > 0).then_some(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_follows_themselves() {
        let user = UserId::from_trusted(7);
        let refused = check_follow(user, user).unwrap_err();
        assert_eq!(refused.field, CREATOR_FIELD);
        assert!(refused.description.contains("themselves"), "{refused}");
        assert!(check_follow(user, UserId::from_trusted(8)).is_ok());
    }

    #[test]
    fn zero_configured_limit_means_unlimited() {
        assert_eq!(following_limit(10_000), Some(10_000));
        assert_eq!(following_limit(0), None);
    }
}
