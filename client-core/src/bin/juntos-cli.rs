//! `juntos-cli`: a thin command-line front on the Juntos [`Client`].
//!
//! ```text
//! juntos-cli --server http://127.0.0.1:7700 --home DIR request-code +15551234567
//! juntos-cli --server https://chat.example.org --ca-file ca.pem ... (a self-hosted server's CA)
//! juntos-cli ... sign-in +15551234567 123456 [--device-name NAME]
//! juntos-cli ... whoami
//! juntos-cli ... sign-out
//! juntos-cli ... send +12015550124 "hello"
//! juntos-cli ... listen [--for SECONDS] [--json]
//! juntos-cli ... history +12015550124
//! juntos-cli ... read +12015550124
//! juntos-cli ... safety-number +12015550124
//! juntos-cli ... profile [--name "Ana"] [--about "Out sailing"]
//! juntos-cli ... privacy [--presence contacts|nobody] [--profile contacts|nobody]
//! juntos-cli ... presence +12015550124 [+1…]
//! juntos-cli ... profiles +12015550124 [+1…]
//! juntos-cli ... listen --follow +12015550124
//! juntos-cli ... group create Sailing +12015550124 [+1…]
//! juntos-cli ... group add|remove GROUP +1… [+1…]
//! juntos-cli ... group admins GROUP +1… [--demote]
//! juntos-cli ... group rename|leave|show GROUP
//! juntos-cli ... group send GROUP "hello all"
//! juntos-cli ... group history GROUP
//! juntos-cli ... groups
//! juntos-cli ... status post "gone sailing" [--only +1…]… [--except +1…]…
//! juntos-cli ... status list|view ID|delete ID
//! juntos-cli ... send-file +12015550124 PATH [--caption "look"]
//! juntos-cli ... group send-file GROUP PATH [--caption "look"]
//! juntos-cli ... download MESSAGE_ID [--out PATH]
//! juntos-cli ... profile photo PATH | --delete | --of +1… --out FILE [--small]
//! juntos-cli ... status post [TEXT] --media PATH
//! ```
//!
//! Uploads and downloads that take longer than a second show a progress bar on stderr.
//!
//! GROUP is a group id or, when it names exactly one, a group's name.
//!
//! On failure it prints one line, `error: <what happened>`, to stderr and exits with 1 (2 for a
//! usage error).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use juntos_client::{
    Client, ClientConfig, ClientError, Event, EventListener, GroupAction, GroupInfo, Message,
    PresenceInfo, Settings, StatusAudience, StatusInfo, TransferListener, Visibility,
};
use juntos_proto::clock::{OffsetFileClock, SharedClock, SystemClock};

/// The longest device name the server accepts, in characters.
const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Juntos from the command line: sign in with a phone number and a texted code.
#[derive(Debug, Parser)]
#[command(name = "juntos-cli", version)]
struct Cli {
    /// The server (gateway) URL: https://host[:port], or http://host:port for a server on this
    /// machine only (localhost, 127.0.0.0/8, [::1]).
    #[arg(
        long,
        global = true,
        env = "JUNTOS_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    server: String,
    /// Also trust the certificates in this PEM file for https: a self-hosted server's private
    /// CA, or its self-signed certificate (the web PKI roots stay trusted).
    #[arg(long, global = true, env = "JUNTOS_CA_FILE", value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Where this device's keys and session are kept [default: ~/.juntos-cli].
    #[arg(long, global = true, env = "JUNTOS_HOME")]
    home: Option<PathBuf>,
    /// Tests only: offset the clock by the milliseconds written in this file.
    #[arg(long, global = true, env = "JUNTOS_TEST_CLOCK_FILE", hide = true)]
    test_clock_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Text a sign-in code to a phone number (E.164, e.g. +15551234567).
    RequestCode {
        /// The phone number, E.164.
        phone: String,
    },
    /// Sign this device in with the texted code.
    SignIn {
        /// The phone number the code was sent to, E.164.
        phone: String,
        /// The code from the text message.
        code: String,
        /// The name other devices of the account see [default: "juntos-cli on <host name>"].
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Show the signed-in user and device (asks the server).
    Whoami,
    /// Sign this device out and forget its keys.
    SignOut,
    /// Send a text message (queued and sent when the network allows).
    Send {
        /// The recipient: E.164 phone number or user id.
        to: String,
        /// The text.
        text: String,
    },
    /// Receive: print incoming messages and events (sending delivered receipts) until Ctrl-C.
    Listen {
        /// Stop after this many seconds.
        #[arg(long = "for")]
        seconds: Option<u64>,
        /// One JSON object per event.
        #[arg(long)]
        json: bool,
        /// Follow this user's presence (E.164 phone number or user id); repeatable.
        #[arg(long)]
        follow: Vec<String>,
    },
    /// Show the conversation with someone (fetching what arrived first).
    History {
        /// E.164 phone number or user id.
        peer: String,
        /// How many of the newest messages.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Mark the conversation with someone read (they get read receipts).
    Read {
        /// E.164 phone number or user id.
        peer: String,
    },
    /// Show the safety number to compare with someone.
    SafetyNumber {
        /// E.164 phone number or user id.
        peer: String,
    },
    /// Show this user's profile, or change its name or about line.
    Profile {
        /// New display name (at most 64 characters; "" clears it).
        #[arg(long)]
        name: Option<String>,
        /// New about line (at most 140 characters; "" clears it).
        #[arg(long)]
        about: Option<String>,
        #[command(subcommand)]
        photo: Option<ProfileCommand>,
    },
    /// Send a picture, video or file (encrypted on this device; resumes an interrupted upload).
    SendFile {
        /// The recipient: E.164 phone number or user id.
        to: String,
        /// The file.
        path: PathBuf,
        /// A text shown with it.
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Download, check and decrypt a message's attachment.
    Download {
        message_id: String,
        /// Where to write it [default: media/<its name> in the home directory].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show or change who sees this user's presence and profile (mutual contacts only, ever).
    Privacy {
        /// Who sees when you are online and were last seen.
        #[arg(long, value_parser = parse_visibility)]
        presence: Option<Visibility>,
        /// Who sees your name and about line.
        #[arg(long, value_parser = parse_visibility)]
        profile: Option<Visibility>,
    },
    /// Show whether people are online, or when they were last seen (those you may see).
    Presence {
        /// E.164 phone numbers or user ids.
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Show people's names and about lines (those you may see).
    Profiles {
        /// E.164 phone numbers or user ids.
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Groups: create, change, send to, show.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List the groups you are in (and those you left).
    Groups,
    /// Statuses: texts that vanish after 24 hours.
    #[command(subcommand)]
    Status(StatusCommand),
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Set your profile photo (JPEG, PNG or WebP), remove it, or fetch someone's.
    Photo {
        /// The image to set.
        #[arg(required_unless_present_any = ["delete", "of"])]
        path: Option<PathBuf>,
        /// Remove your photo.
        #[arg(long, conflicts_with_all = ["path", "of"])]
        delete: bool,
        /// Fetch this person's photo (E.164 or user id) into --out.
        #[arg(long, requires = "out", conflicts_with = "path")]
        of: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// The 96x96 version instead of 640x640.
        #[arg(long)]
        small: bool,
    },
}

#[derive(Debug, Subcommand)]
enum StatusCommand {
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

#[derive(Debug, Subcommand)]
enum GroupCommand {
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

fn parse_visibility(s: &str) -> Result<Visibility, String> {
    match s {
        "contacts" => Ok(Visibility::Contacts),
        "nobody" => Ok(Visibility::Nobody),
        _ => Err("expected contacts or nobody".to_owned()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Quiet unless RUST_LOG asks (e.g. RUST_LOG=juntos_client=debug); never on stdout.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let clock: SharedClock = match &cli.test_clock_file {
        Some(path) => Arc::new(OffsetFileClock::new(path)),
        None => Arc::new(SystemClock),
    };
    let home = cli.home.unwrap_or_else(default_home);
    let extra_ca_pem = match &cli.ca_file {
        Some(path) => Some(read_ca_file(path)?),
        None => None,
    };
    let home_dir = home
        .into_os_string()
        .into_string()
        .map_err(|_| ClientError::InvalidInput {
            message: "the home directory must be a UTF-8 path".to_owned(),
        })?;
    let config = ClientConfig {
        server_url: cli.server,
        home_dir,
        extra_ca_pem,
    };
    let client = Client::with_config_and_clock(config, clock)?;
    match cli.command {
        Command::RequestCode { phone } => {
            let sent = client.request_code(phone).await?;
            println!("code sent; it expires in {} s", sent.expires_in_seconds);
        }
        Command::SignIn {
            phone,
            code,
            device_name,
        } => {
            let name = device_name.unwrap_or_else(default_device_name);
            let account = client.sign_in(phone, code, name).await?;
            println!(
                "signed in{}",
                if account.new_account {
                    " (new account)"
                } else {
                    ""
                }
            );
            println!("user {}", account.user_id);
            println!("device {}", account.device_id);
        }
        Command::Whoami => {
            let me = client.me().await?;
            println!("user {}", me.user_id);
            println!("device {}", me.device_id);
        }
        Command::SignOut => {
            client.sign_out().await?;
            println!("signed out");
        }
        Command::Send { to, text } => {
            let message = client.send_text(to, text).await?;
            report_send(&client, &message).await?;
        }
        Command::Listen {
            seconds,
            json,
            follow,
        } => {
            if !follow.is_empty() {
                client.follow_presence(follow).await?;
            }
            let printer: Arc<dyn EventListener> = Arc::new(Printer { json });
            Arc::clone(&client).start(Some(printer)).await?;
            match seconds {
                Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            client.stop();
            // Receipts queued while listening go out before exit (best effort).
            let _ = client.flush_outbox().await;
        }
        Command::History { peer, limit } => {
            // Pick up what arrived meanwhile (receipts, edits) first; offline shows local history.
            catch_up(&client).await;
            for m in client.history(peer, limit).await? {
                println!("{}", history_line(&m));
            }
        }
        Command::Read { peer } => {
            catch_up(&client).await;
            let n = client.mark_read(peer).await?;
            let _ = client.flush_outbox().await;
            println!("marked {n} read");
        }
        Command::SafetyNumber { peer } => {
            println!("{}", client.safety_number(peer).await?);
        }
        Command::Profile {
            photo: Some(photo), ..
        } => run_photo(&client, photo).await?,
        Command::SendFile { to, path, caption } => {
            let bar = Bar::new("uploading");
            let message = client
                .send_file(to, path_string(&path)?, caption, Some(bar.clone()))
                .await;
            bar.done();
            report_send(&client, &message?).await?;
        }
        Command::Download { message_id, out } => {
            catch_up(&client).await;
            let out = out.as_deref().map(path_string).transpose()?;
            let bar = Bar::new("downloading");
            let saved = client.download(message_id, out, Some(bar.clone())).await;
            bar.done();
            println!("saved {}", saved?);
        }
        Command::Profile { name, about, .. } => {
            let settings = if name.is_none() && about.is_none() {
                client.settings().await?
            } else {
                client.set_profile(name, about).await?
            };
            print_settings(&settings);
        }
        Command::Privacy { presence, profile } => {
            let settings = if presence.is_none() && profile.is_none() {
                client.settings().await?
            } else {
                client.set_privacy(presence, profile).await?
            };
            print_settings(&settings);
        }
        Command::Presence { peers } => {
            let seen = client.presence(peers).await?;
            if seen.is_empty() {
                println!("nobody you may see");
            }
            for p in &seen {
                println!("{}", presence_line(p));
            }
        }
        Command::Profiles { peers } => {
            let seen = client.profiles(peers).await?;
            if seen.is_empty() {
                println!("nobody you may see");
            }
            for p in seen {
                println!("{} name={:?} about={:?}", p.user_id, p.name, p.about);
            }
        }
        Command::Group(command) => run_group(&client, command).await?,
        Command::Status(command) => run_status(&client, command).await?,
        Command::Groups => {
            for g in client.groups().await? {
                println!("{}", group_line(&g));
            }
        }
    }
    Ok(())
}

async fn run_group(client: &Client, command: GroupCommand) -> Result<(), ClientError> {
    let shown = match command {
        GroupCommand::Create { name, members } => client.create_group(name, members).await?,
        GroupCommand::Add { group, members } => {
            let id = group_id(client, &group).await?;
            client.add_group_members(id, members).await?
        }
        GroupCommand::Remove { group, members } => {
            let id = group_id(client, &group).await?;
            client.remove_group_members(id, members).await?
        }
        GroupCommand::Admins {
            group,
            members,
            demote,
        } => {
            let id = group_id(client, &group).await?;
            client.set_group_admins(id, members, !demote).await?
        }
        GroupCommand::Rename { group, name } => {
            let id = group_id(client, &group).await?;
            client.rename_group(id, name).await?
        }
        GroupCommand::Leave { group } => {
            let id = group_id(client, &group).await?;
            client.leave_group(id).await?
        }
        GroupCommand::Show { group } => {
            let id = group_id(client, &group).await?;
            client.group(id).await?
        }
        GroupCommand::Send { group, text } => {
            let id = group_id(client, &group).await?;
            let message = client.send_group_text(id, text).await?;
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
                .send_group_file(id, path_string(&path)?, caption, Some(bar.clone()))
                .await;
            bar.done();
            report_send(client, &message?).await?;
            return Ok(());
        }
        GroupCommand::History { group, limit } => {
            let id = group_id(client, &group).await?;
            catch_up(client).await;
            for m in client.group_history(id, limit).await? {
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

async fn run_status(client: &Client, command: StatusCommand) -> Result<(), ClientError> {
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
                        .post_status_media(path_string(&path)?, text, audience, Some(bar.clone()))
                        .await;
                    bar.done();
                    posted?
                }
                None => client.post_status(text, audience).await?,
            };
            println!("{}", status_line(&posted));
        }
        StatusCommand::List => {
            catch_up(client).await;
            let all = client.statuses().await?;
            if all.is_empty() {
                println!("no statuses");
            }
            for s in &all {
                println!("{}", status_line(s));
            }
        }
        StatusCommand::View { status_id } => {
            catch_up(client).await;
            client.statuses().await?;
            let seen = client.view_status(status_id).await?;
            let _ = client.flush_outbox().await;
            println!("{}", status_line(&seen));
        }
        StatusCommand::Delete { status_id } => {
            client.delete_status(status_id).await?;
            println!("deleted");
        }
    }
    Ok(())
}

async fn run_photo(client: &Client, command: ProfileCommand) -> Result<(), ClientError> {
    let ProfileCommand::Photo {
        path,
        delete,
        of,
        out,
        small,
    } = command;
    if delete {
        client.delete_profile_photo().await?;
        println!("profile photo removed");
    } else if let (Some(peer), Some(out)) = (of, out) {
        let jpeg = client.profile_photo(peer, small).await?;
        std::fs::write(&out, &jpeg)?;
        println!("saved {} ({} bytes)", out.display(), jpeg.len());
    } else if let Some(path) = path {
        let version = client.set_profile_photo(path_string(&path)?).await?;
        println!("profile photo set (version {version})");
    }
    Ok(())
}

/// Prints where a just-queued message is after trying to send it. Offline, or with the
/// server's certificate refused, it stays queued (the outbox waits for both) and the run
/// succeeds; the line says why it did not go.
async fn report_send(client: &Client, message: &Message) -> Result<(), ClientError> {
    match client.flush_outbox().await {
        Ok(0) => println!("sent {}", message.message_id),
        Ok(_) | Err(ClientError::Network { .. }) => println!(
            "queued {} (offline: it goes out on the next run)",
            message.message_id
        ),
        Err(e @ ClientError::Certificate { .. }) => println!(
            "queued {} (not sent, {e}; it goes out on a run after that is fixed)",
            message.message_id
        ),
        Err(e) => return Err(e),
    }
    Ok(())
}

fn path_string(path: &std::path::Path) -> Result<String, ClientError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::InvalidInput {
            message: "the path is not valid UTF-8".to_owned(),
        })
}

/// A progress bar that shows itself once a transfer has taken a second.
struct Bar {
    bar: ProgressBar,
    started: Instant,
}

impl Bar {
    fn new(what: &str) -> Arc<Self> {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Arc::new(Self {
            bar,
            started: Instant::now(),
        })
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}

impl TransferListener for Bar {
    fn on_progress(&self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        if self.bar.is_hidden() && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
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

/// The group `arg` names: an id, or the name of exactly one known group.
async fn group_id(client: &Client, arg: &str) -> Result<String, ClientError> {
    if arg.len() == 32 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(arg.to_owned());
    }
    let named: Vec<GroupInfo> = client
        .groups()
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

fn action_word(action: GroupAction) -> &'static str {
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

fn print_settings(s: &Settings) {
    let word = |v: Visibility| match v {
        Visibility::Contacts => "contacts",
        Visibility::Nobody => "nobody",
    };
    println!("name {:?}", s.name);
    println!("about {:?}", s.about);
    println!("presence visible to {}", word(s.presence));
    println!("profile visible to {}", word(s.profile));
}

/// `<user> online`, `<user> last seen <ms>`, `<user> never seen` or `<user> hidden`.
fn presence_line(p: &PresenceInfo) -> String {
    match (p.visible, p.online, p.last_seen_ms) {
        (false, _, _) => format!("{} hidden", p.user_id),
        (true, true, _) => format!("{} online", p.user_id),
        (true, false, Some(ms)) => format!("{} last seen {ms}", p.user_id),
        (true, false, None) => format!("{} never seen", p.user_id),
    }
}

/// Fetches what is waiting and sends what is queued; failures (offline) are only noted.
async fn catch_up(client: &Client) {
    if let Err(e) = client.sync_now().await {
        eprintln!("note: showing local history only ({e})");
    }
    let _ = client.flush_outbox().await;
}

/// Prints events as they come.
struct Printer {
    json: bool,
}

impl EventListener for Printer {
    fn on_event(&self, event: Event) {
        if self.json {
            println!("{}", event_json(&event));
            return;
        }
        match event {
            Event::MessageReceived { message } => println!("{}", history_line(&message)),
            Event::MessageChanged { message } => println!("changed {}", history_line(&message)),
            Event::SendFailed { message_id, error } => println!("failed {message_id}: {error}"),
            Event::Undecryptable { sender_user_id, .. } => {
                println!("undecryptable message from {sender_user_id}")
            }
            Event::Connected => println!("connected"),
            Event::Disconnected { reason } => println!("disconnected: {reason}"),
            Event::PresenceChanged { presence } => {
                println!("presence {}", presence_line(&presence))
            }
            Event::StatusSeen {
                status_id,
                viewer_user_id,
            } => println!("status {status_id} seen by {viewer_user_id}"),
            Event::GroupChanged { notice: n } => println!(
                "group {} {:?}: {} {} {}",
                n.group_id,
                n.name,
                n.actor_user_id,
                action_word(n.action),
                n.subject_user_ids.join(" ")
            ),
        }
    }
}

/// One history line: `<id> <status> <from> [reply to …] [forwarded] text`.
fn history_line(m: &Message) -> String {
    let who = if m.outgoing {
        "me".to_owned()
    } else {
        m.sender_user_id.clone()
    };
    let mut line = format!("{} {:?} {who}:", m.message_id, m.status);
    if let Some(group) = &m.group_id {
        line = format!("{} {:?} [group {group}] {who}:", m.message_id, m.status);
    }
    if let Some(q) = &m.quoted_message_id {
        line.push_str(&format!(" [reply to {q}]"));
    }
    if m.forwarded {
        line.push_str(" [forwarded]");
    }
    if m.deleted {
        line.push_str(" [deleted]");
    } else {
        if let Some(a) = &m.attachment {
            line.push_str(&format!(
                " [{} {}, {} bytes]",
                a.mime_type, a.file_name, a.size
            ));
        }
        line.push(' ');
        line.push_str(&m.body);
        if m.edited {
            line.push_str(" [edited]");
        }
    }
    for r in &m.reactions {
        line.push_str(&format!(" {}:{}", r.user_id, r.emoji));
    }
    line
}

/// An event as one JSON object.
fn event_json(event: &Event) -> String {
    let message = |kind: &str, m: &Message| {
        serde_json::json!({
            "event": kind,
            "message_id": m.message_id,
            "conversation": m.conversation_user_id,
            "group": m.group_id,
            "sender": m.sender_user_id,
            "sender_device": m.sender_device_id,
            "outgoing": m.outgoing,
            "text": m.body,
            "quoted": m.quoted_message_id,
            "forwarded": m.forwarded,
            "status": format!("{:?}", m.status).to_lowercase(),
            "edited": m.edited,
            "deleted": m.deleted,
            "reactions": m.reactions.iter().map(|r| serde_json::json!({"user": r.user_id, "emoji": r.emoji})).collect::<Vec<_>>(),
            "sent_at_ms": m.sent_at_ms,
        })
    };
    let value = match event {
        Event::MessageReceived { message: m } => message("message", m),
        Event::MessageChanged { message: m } => message("changed", m),
        Event::SendFailed { message_id, error } => {
            serde_json::json!({"event": "send_failed", "message_id": message_id, "error": error})
        }
        Event::Undecryptable {
            sender_user_id,
            sender_device_id,
        } => {
            serde_json::json!({"event": "undecryptable", "sender": sender_user_id, "sender_device": sender_device_id})
        }
        Event::Connected => serde_json::json!({"event": "connected"}),
        Event::Disconnected { reason } => {
            serde_json::json!({"event": "disconnected", "reason": reason})
        }
        Event::PresenceChanged { presence: p } => serde_json::json!({
            "event": "presence",
            "user": p.user_id,
            "visible": p.visible,
            "online": p.online,
            "last_seen_ms": p.last_seen_ms,
        }),
        Event::StatusSeen {
            status_id,
            viewer_user_id,
        } => {
            serde_json::json!({"event": "status_seen", "status": status_id, "viewer": viewer_user_id})
        }
        Event::GroupChanged { notice: n } => serde_json::json!({
            "event": "group",
            "group": n.group_id,
            "version": n.version,
            "actor": n.actor_user_id,
            "action": action_word(n.action),
            "subjects": n.subject_user_ids,
            "promoted": n.promoted_user_ids,
            "name": n.name,
            "time_ms": n.time_ms,
            "exists": n.exists,
        }),
    };
    value.to_string()
}

/// The PEM in `--ca-file` (checked by the client, which says what is wrong with it).
fn read_ca_file(path: &std::path::Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|e| ClientError::InvalidInput {
        message: format!("cannot read the CA file {}: {e}", path.display()),
    })
}

/// `~/.juntos-cli`, or `./.juntos-cli` without a home directory.
fn default_home() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".juntos-cli"),
        None => PathBuf::from(".juntos-cli"),
    }
}

/// "juntos-cli on <host name>", within the server's length limit.
fn default_device_name() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "linux".to_owned());
    "juntos-cli on "
        .chars()
        .chain(host.chars())
        .take(MAX_DEVICE_NAME_CHARS)
        .collect()
}
