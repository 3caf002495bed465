//! `fanfare ctl groups …`: create and read groups, list and change their members, list a
//! user's groups. Every call acts as `--as-user` (`groups of USER` acts as USER).

use clap::{Subcommand, ValueEnum};
use fanfare_proto::common::v1::GroupKind;
use fanfare_proto::groups::v1 as pb;

use super::client::{Ctl, as_user, call};
use super::{output, positive_id};

/// The kinds a group may be created with.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Kind {
    /// Friends chatting: every member posts; small and private.
    Chat,
    /// A creator-run chat: every member posts, the creator and admins moderate.
    Community,
    /// A creator channel: the owner and admins post, members read.
    Broadcast,
}

impl Kind {
    fn to_proto(self) -> GroupKind {
        match self {
            Kind::Chat => GroupKind::Chat,
            Kind::Community => GroupKind::Community,
            Kind::Broadcast => GroupKind::Broadcast,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum GroupsCommand {
    /// Create a group owned by --as-user.
    Create {
        /// What kind of group.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Its title, 1 to 128 characters.
        #[arg(long)]
        title: String,
        /// An optional description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Read one group.
    Get {
        /// The group.
        #[arg(value_parser = positive_id())]
        group: i64,
    },
    /// List every member of a group (all pages).
    Members {
        /// The group.
        #[arg(value_parser = positive_id())]
        group: i64,
    },
    /// Add users to a group, all or none.
    Add {
        /// The group.
        #[arg(value_parser = positive_id())]
        group: i64,
        /// The users to add.
        #[arg(required = true, value_parser = positive_id())]
        users: Vec<i64>,
    },
    /// Remove a member from a group (they may rejoin).
    Remove {
        /// The group.
        #[arg(value_parser = positive_id())]
        group: i64,
        /// The member to remove.
        #[arg(value_parser = positive_id())]
        user: i64,
    },
    /// List a user's groups, most recently joined first (acting as that user).
    Of {
        /// The user; --as-user when left out.
        #[arg(value_parser = positive_id())]
        user: Option<i64>,
    },
}

/// Runs one `groups` command.
pub(super) async fn run(ctl: &Ctl, command: GroupsCommand) -> anyhow::Result<()> {
    match command {
        GroupsCommand::Create { kind, title, description } => create(ctl, kind, title, description).await,
        GroupsCommand::Get { group } => get(ctl, group).await,
        GroupsCommand::Members { group } => members(ctl, group).await,
        GroupsCommand::Add { group, users } => add(ctl, group, users).await,
        GroupsCommand::Remove { group, user } => remove(ctl, group, user).await,
        GroupsCommand::Of { user } => of(ctl, ctl.user_or_actor(user)?).await,
    }
}

async fn create(ctl: &Ctl, kind: Kind, title: String, description: String) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let request = pb::CreateGroupRequest { kind: kind.to_proto().into(), title, description, ..Default::default() };
    let mut target = ctl.groups();
    let created = call("CreateGroup", &target.url, target.client.create_group(as_user(actor, request))).await?;
    if ctl.json() {
        return output::print_json(&created, "fanfare.groups.v1.CreateGroupResponse");
    }
    match &created.group {
        Some(group) => {
            println!("created group {}", group.group_id);
            print_group(group);
        }
        None => println!("created a group (the answer carried no group)"),
    }
    Ok(())
}

async fn get(ctl: &Ctl, group: i64) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut target = ctl.groups();
    let request = as_user(actor, pb::GetGroupRequest { group_id: group });
    let read = call("GetGroup", &target.url, target.client.get_group(request)).await?;
    if ctl.json() {
        return output::print_json(&read, "fanfare.groups.v1.GetGroupResponse");
    }
    if let Some(group) = &read.group {
        print_group(group);
    }
    Ok(())
}

/// A group as a short block of `name value` lines.
pub(super) fn print_group(group: &pb::Group) {
    println!("group {} · {} · {:?}", group.group_id, output::group_kind(group.kind), group.title);
    if !group.description.is_empty() {
        println!("  description  {}", group.description);
    }
    println!("  owner        user {}", group.owner_user_id);
    let limit = if group.member_limit == 0 { "unlimited".to_owned() } else { group.member_limit.to_string() };
    println!("  members      {} (limit {limit})", group.member_count);
    if let Some(settings) = &group.settings {
        println!("  joining      {}", output::join_policy(settings.join_policy));
        println!("  posting      {}", output::post_policy(settings.post_policy));
        match settings.slow_mode_seconds {
            0 => println!("  slow mode    off"),
            seconds => println!("  slow mode    {seconds} s"),
        }
        println!("  history      {}", output::history(settings.history_visible_to_new_members));
        if settings.min_follow_age_seconds > 0 {
            println!("  follow age   {} s", settings.min_follow_age_seconds);
        }
    }
    println!("  created      {}", output::time(group.created_at.as_ref()));
    if group.archived_at.is_some() {
        println!("  archived     {}", output::time(group.archived_at.as_ref()));
    }
}

async fn members(ctl: &Ctl, group: i64) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut all = pb::ListMembersResponse::default();
    let mut page_token = String::new();
    loop {
        let mut target = ctl.groups();
        let request = pb::ListMembersRequest { group_id: group, page_size: 1000, page_token, role: 0 };
        let page = call("ListMembers", &target.url, target.client.list_members(as_user(actor, request))).await?;
        all.members.extend(page.members);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if ctl.json() {
        return output::print_json(&all, "fanfare.groups.v1.ListMembersResponse");
    }
    println!("{:<12} {:<8} {:<28} muted until", "user", "role", "joined");
    for member in &all.members {
        println!(
            "{:<12} {:<8} {:<28} {}",
            member.user_id,
            output::role(member.role),
            output::time(member.joined_at.as_ref()),
            output::time(member.muted_until.as_ref())
        );
    }
    println!("{} member(s)", all.members.len());
    Ok(())
}

async fn add(ctl: &Ctl, group: i64, users: Vec<i64>) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut target = ctl.groups();
    let request = as_user(actor, pb::AddMembersRequest { group_id: group, user_ids: users });
    let added = call("AddMembers", &target.url, target.client.add_members(request)).await?;
    if ctl.json() {
        return output::print_json(&added, "fanfare.groups.v1.AddMembersResponse");
    }
    let ids: Vec<String> = added.added.iter().map(|member| member.user_id.to_string()).collect();
    println!("added to group {group}: {}", if ids.is_empty() { "nobody".to_owned() } else { ids.join(", ") });
    if !added.already_member_user_ids.is_empty() {
        let already: Vec<String> = added.already_member_user_ids.iter().map(i64::to_string).collect();
        println!("already members: {}", already.join(", "));
    }
    Ok(())
}

async fn remove(ctl: &Ctl, group: i64, user: i64) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut target = ctl.groups();
    let request = as_user(actor, pb::RemoveMemberRequest { group_id: group, user_id: user });
    let removed = call("RemoveMember", &target.url, target.client.remove_member(request)).await?;
    if ctl.json() {
        return output::print_json(&removed, "fanfare.groups.v1.RemoveMemberResponse");
    }
    println!("removed user {user} from group {group}");
    Ok(())
}

async fn of(ctl: &Ctl, user: i64) -> anyhow::Result<()> {
    let mut all = pb::ListUserGroupsResponse::default();
    let mut page_token = String::new();
    loop {
        let mut target = ctl.groups();
        let request = as_user(user, pb::ListUserGroupsRequest { page_size: 1000, page_token });
        let page = call("ListUserGroups", &target.url, target.client.list_user_groups(request)).await?;
        all.groups.extend(page.groups);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if ctl.json() {
        return output::print_json(&all, "fanfare.groups.v1.ListUserGroupsResponse");
    }
    println!("{:<12} {:<10} {:<8} {:<28} title", "group", "kind", "role", "joined");
    for entry in &all.groups {
        let (Some(group), Some(membership)) = (&entry.group, &entry.membership) else { continue };
        println!(
            "{:<12} {:<10} {:<8} {:<28} {:?}",
            group.group_id,
            output::group_kind(group.kind),
            output::role(membership.role),
            output::time(membership.joined_at.as_ref()),
            group.title
        );
    }
    println!("user {user} is in {} group(s)", all.groups.len());
    Ok(())
}
