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
//!
//! This file holds the arguments and the dispatch; each command family has its own module.
#![forbid(unsafe_code)]

mod account;
mod common;
mod groups;
mod listen;
mod media;
mod messages;
mod people;
mod profile;
mod progress;
mod setup;
mod statuses;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use juntos_client::{Client, ClientError, Visibility};

use crate::groups::GroupCommand;
use crate::profile::ProfileCommand;
use crate::statuses::StatusCommand;

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
    common::exit_code(run(cli).await)
}

/// Opens the client the global options describe and runs the command on it.
async fn run(cli: Cli) -> Result<(), ClientError> {
    let client = setup::open_client(
        cli.server,
        cli.ca_file.as_deref(),
        cli.home,
        cli.test_clock_file.as_deref(),
    )?;
    dispatch(&client, cli.command).await
}

/// Hands the command to the module of its family.
async fn dispatch(client: &Arc<Client>, command: Command) -> Result<(), ClientError> {
    match command {
        Command::RequestCode { phone } => account::request_code(client, phone).await,
        Command::SignIn {
            phone,
            code,
            device_name,
        } => account::sign_in(client, phone, code, device_name).await,
        Command::Whoami => account::whoami(client).await,
        Command::SignOut => account::sign_out(client).await,
        Command::Send { to, text } => messages::send(client, to, text).await,
        Command::Listen {
            seconds,
            json,
            follow,
        } => listen::listen(client, seconds, json, follow).await,
        Command::History { peer, limit } => messages::history(client, peer, limit).await,
        Command::Read { peer } => messages::read(client, peer).await,
        Command::SafetyNumber { peer } => messages::safety_number(client, peer).await,
        Command::SendFile { to, path, caption } => {
            media::send_file(client, to, &path, caption).await
        }
        Command::Download { message_id, out } => {
            media::download(client, message_id, out.as_deref()).await
        }
        // `profile photo …` first: without a subcommand, `profile` shows or changes the rest.
        Command::Profile {
            photo: Some(photo), ..
        } => profile::photo(client, photo).await,
        Command::Profile { name, about, .. } => profile::profile(client, name, about).await,
        Command::Privacy {
            presence,
            profile: profile_visibility,
        } => profile::privacy(client, presence, profile_visibility).await,
        Command::Presence { peers } => people::presence(client, peers).await,
        Command::Profiles { peers } => people::profiles(client, peers).await,
        Command::Group(command) => groups::run(client, command).await,
        Command::Groups => groups::list(client).await,
        Command::Status(command) => statuses::run(client, command).await,
    }
}
