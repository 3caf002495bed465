//! `fanfare ctl follow` and `unfollow`: change the follow graph as `--as-user`.

use fanfare_proto::fanout::v1 as pb;

use super::client::{Ctl, as_user, call};
use super::output;

/// Makes --as-user follow `creator`.
pub(super) async fn follow(ctl: &Ctl, creator: i64) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut target = ctl.fanout();
    let request = as_user(actor, pb::FollowRequest { creator_user_id: creator });
    let followed = call("Follow", &target.url, target.client.follow(request)).await?;
    if ctl.json() {
        return output::print_json(&followed, "fanfare.fanout.v1.FollowResponse");
    }
    let since = output::time(followed.follow.as_ref().and_then(|follow| follow.followed_at.as_ref()));
    match followed.created {
        true => println!("user {actor} now follows user {creator} (since {since})"),
        false => println!("user {actor} already followed user {creator} (since {since})"),
    }
    Ok(())
}

/// Makes --as-user stop following `creator`.
pub(super) async fn unfollow(ctl: &Ctl, creator: i64) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut target = ctl.fanout();
    let request = as_user(actor, pb::UnfollowRequest { creator_user_id: creator });
    let unfollowed = call("Unfollow", &target.url, target.client.unfollow(request)).await?;
    if ctl.json() {
        return output::print_json(&unfollowed, "fanfare.fanout.v1.UnfollowResponse");
    }
    match unfollowed.removed {
        true => println!("user {actor} no longer follows user {creator}"),
        false => println!("user {actor} was not following user {creator}"),
    }
    Ok(())
}
