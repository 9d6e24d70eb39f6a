//! The group commands: `group …` (create, change, send to, show) and `groups`, with how a
//! group is named on the command line and shown.

use std::path::PathBuf;

use clap::Subcommand;
use juntos_client::{Client, ClientError, GroupAction, GroupInfo};

use crate::common::{catch_up, path_string, report_send};
use crate::messages::history_line;
use crate::progress::Bar;

/// The `group` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group with you as admin.
    Create {
        /// The group's name (1-100 characters).
        name: String,
        /// Members: E.164 phone numbers or user ids.
        members: Vec<String>,
    },
    /// Add members (admins only).
    Add {
        /// Group id or name.
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members (admins only).
    Remove {
        /// Group id or name.
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Make members admins (or, with --demote, plain members again).
    Admins {
        /// Group id or name.
        group: String,
        #[arg(required = true)]
        members: Vec<String>,
        #[arg(long)]
        demote: bool,
    },
    /// Rename the group (admins only).
    Rename {
        /// Group id or name.
        group: String,
        name: String,
    },
    /// Leave the group.
    Leave {
        /// Group id or name.
        group: String,
    },
    /// Show the group and its members.
    Show {
        /// Group id or name.
        group: String,
    },
    /// Send a text to every member.
    Send {
        /// Group id or name.
        group: String,
        text: String,
    },
    /// Send a picture, video or file to every member.
    SendFile {
        /// Group id or name.
        group: String,
        path: PathBuf,
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Show the group's conversation (fetching what arrived first).
    History {
        /// Group id or name.
        group: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// `group …`: runs the group subcommand; those that change or show a group print it and its
/// members.
pub(crate) async fn run(client: &Client, command: GroupCommand) -> Result<(), ClientError> {
    let shown = match command {
        GroupCommand::Create { name, members } => client.groups().create(name, members).await?,
        GroupCommand::Add { group, members } => {
            let id = group_id(client, &group).await?;
            client.groups().add_members(id, members).await?
        }
        GroupCommand::Remove { group, members } => {
            let id = group_id(client, &group).await?;
            client.groups().remove_members(id, members).await?
        }
        GroupCommand::Admins {
            group,
            members,
            demote,
        } => {
            let id = group_id(client, &group).await?;
            client.groups().set_admins(id, members, !demote).await?
        }
        GroupCommand::Rename { group, name } => {
            let id = group_id(client, &group).await?;
            client.groups().rename(id, name).await?
        }
        GroupCommand::Leave { group } => {
            let id = group_id(client, &group).await?;
            client.groups().leave(id).await?
        }
        GroupCommand::Show { group } => {
            let id = group_id(client, &group).await?;
            client.groups().get(id).await?
        }
        GroupCommand::Send { group, text } => {
            let id = group_id(client, &group).await?;
            let message = client.groups().send_text(id, text).await?;
            return report_send(client, &message).await;
        }
        GroupCommand::SendFile {
            group,
            path,
            caption,
        } => {
            let id = group_id(client, &group).await?;
            let bar = Bar::new("uploading");
            let message = client
                .groups()
                .send_file(id, path_string(&path)?, caption, Some(bar.clone()))
                .await;
            bar.done();
            report_send(client, &message?).await?;
            return Ok(());
        }
        GroupCommand::History { group, limit } => {
            let id = group_id(client, &group).await?;
            catch_up(client).await;
            for m in client.groups().history(id, limit).await? {
                println!("{}", history_line(&m));
            }
            return Ok(());
        }
    };
    println!("{}", group_line(&shown));
    for m in &shown.members {
        println!("  {}{}", m.user_id, if m.admin { " (admin)" } else { "" });
    }
    Ok(())
}

/// `groups`: the groups you are in (and those you left).
pub(crate) async fn list(client: &Client) -> Result<(), ClientError> {
    for g in client.groups().list().await? {
        println!("{}", group_line(&g));
    }
    Ok(())
}

/// The group `arg` names: an id, or the name of exactly one known group.
async fn group_id(client: &Client, arg: &str) -> Result<String, ClientError> {
    if arg.len() == 32 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(arg.to_owned());
    }
    let named: Vec<GroupInfo> = client
        .groups()
        .list()
        .await?
        .into_iter()
        .filter(|g| g.name == arg && g.active)
        .collect();
    match named.as_slice() {
        [one] => Ok(one.group_id.clone()),
        [] => Err(ClientError::InvalidInput {
            message: "no group of yours has that id or name".to_owned(),
        }),
        _ => Err(ClientError::InvalidInput {
            message: "several groups have that name: use the group id".to_owned(),
        }),
    }
}

/// `<id> <name> (<n> members[, admin][, left])`.
fn group_line(g: &GroupInfo) -> String {
    let mut line = format!("{} {:?} ({} members", g.group_id, g.name, g.members.len());
    if g.admin {
        line.push_str(", admin");
    }
    if !g.active {
        line.push_str(", left");
    }
    line.push(')');
    line
}

/// The word for a group change, as `listen` prints it.
pub(crate) fn action_word(action: GroupAction) -> &'static str {
    match action {
        GroupAction::Created => "created",
        GroupAction::Added => "added",
        GroupAction::Removed => "removed",
        GroupAction::Left => "left",
        GroupAction::Promoted => "promoted",
        GroupAction::Demoted => "demoted",
        GroupAction::Renamed => "renamed",
    }
}
