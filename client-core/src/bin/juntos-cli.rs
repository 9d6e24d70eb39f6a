//! `juntos-cli`: a thin command-line front on the Juntos [`Client`].
//!
//! ```text
//! juntos-cli --server http://127.0.0.1:7700 --home DIR request-code +15551234567
//! juntos-cli ... sign-in +15551234567 123456 [--device-name NAME]
//! juntos-cli ... whoami
//! juntos-cli ... sign-out
//! ```
//!
//! On failure it prints one line, `error: <what happened>`, to stderr and exits with 1 (2 for a
//! usage error).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use juntos_client::{Client, ClientError};
use juntos_proto::clock::{OffsetFileClock, SharedClock, SystemClock};

/// The longest device name the server accepts, in characters.
const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Juntos from the command line: sign in with a phone number and a texted code.
#[derive(Debug, Parser)]
#[command(name = "juntos-cli", version)]
struct Cli {
    /// The server (gateway) URL.
    #[arg(
        long,
        global = true,
        env = "JUNTOS_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    server: String,
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
}

#[tokio::main]
async fn main() -> ExitCode {
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
    let client = Client::with_clock(&cli.server, home, clock)?;
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
    }
    Ok(())
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
