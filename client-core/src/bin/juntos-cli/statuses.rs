//! The status commands: `status post|list|view|delete` (texts and media that vanish after 24
//! hours), and the status line.

use std::path::PathBuf;

use clap::Subcommand;
use juntos_client::{Client, ClientError, StatusAudience, StatusInfo};

use crate::common::{catch_up, path_string};
use crate::progress::Bar;

/// The `status` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum StatusCommand {
    /// Post a status to every contact (or only some, or all but some).
    Post {
        /// The text (with --media, its caption).
        #[arg(default_value = "")]
        text: String,
        /// A picture or video to show.
        #[arg(long)]
        media: Option<PathBuf>,
        /// Only these people (E.164 or user id); repeatable.
        #[arg(long, conflicts_with = "except")]
        only: Vec<String>,
        /// Every contact but these; repeatable.
        #[arg(long)]
        except: Vec<String>,
    },
    /// List the statuses you may see (fetching what arrived first).
    List,
    /// View a status (its poster learns you saw it).
    View { status_id: String },
    /// Delete one of your statuses now.
    Delete { status_id: String },
}

/// `status …`: runs the status subcommand.
pub(crate) async fn run(client: &Client, command: StatusCommand) -> Result<(), ClientError> {
    match command {
        StatusCommand::Post {
            text,
            media,
            only,
            except,
        } => {
            let audience = if !only.is_empty() {
                StatusAudience::Only { members: only }
            } else if !except.is_empty() {
                StatusAudience::ContactsExcept { excluded: except }
            } else {
                StatusAudience::Contacts
            };
            let posted = match media {
                Some(path) => {
                    let bar = Bar::new("uploading");
                    let posted = client
                        .statuses()
                        .post_media(path_string(&path)?, text, audience, Some(bar.clone()))
                        .await;
                    bar.done();
                    posted?
                }
                None => client.statuses().post(text, audience).await?,
            };
            println!("{}", status_line(&posted));
        }
        StatusCommand::List => {
            catch_up(client).await;
            let all = client.statuses().list().await?;
            if all.is_empty() {
                println!("no statuses");
            }
            for s in &all {
                println!("{}", status_line(s));
            }
        }
        StatusCommand::View { status_id } => {
            catch_up(client).await;
            client.statuses().list().await?;
            let seen = client.statuses().view(status_id).await?;
            let _ = client.flush_outbox().await;
            println!("{}", status_line(&seen));
        }
        StatusCommand::Delete { status_id } => {
            client.statuses().delete(status_id).await?;
            println!("deleted");
        }
    }
    Ok(())
}

/// `<id> <poster|me> <text> (expires <ms>[, seen by …][, new])`.
fn status_line(s: &StatusInfo) -> String {
    let who = if s.own { "me" } else { &s.poster_user_id };
    let mut line = format!(
        "{} {who}: {} (expires {}",
        s.status_id, s.text, s.expires_ms
    );
    if s.own && !s.seen_by.is_empty() {
        line.push_str(&format!(", seen by {}", s.seen_by.join(" ")));
    }
    if !s.viewed {
        line.push_str(", new");
    }
    line.push(')');
    line
}
