//! The load generator behind `juntos-bench` (see the binary's documentation for the scenarios).
//!
//! `juntos-bench` (`src/bin/juntos-bench.rs`) calls [`main`]. This module holds the command
//! line and the loop over runs; its modules:
//!
//! * [`pairs`] and [`group`]: the two scenarios, one run each (`pairs::run`, `group::run`);
//! * [`system`]: the system under test (`juntos all`, split roles or `--server`) and the
//!   `juntos` binary;
//! * [`outbox`]: sign-in codes from the console SMS outbox;
//! * [`procfs`]: CPU seconds, memory and load from `/proc`;
//! * [`clock`] and [`stats`]: time stamps, quantiles and rounding for the reports;
//! * [`error`]: why a run failed.

mod clock;
mod error;
mod group;
mod outbox;
mod pairs;
mod procfs;
mod stats;
mod system;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::bench::group::MAX_GROUP_SIZE;
use crate::bench::pairs::MAX_PAIRS;
use crate::bench::system::MAX_PODS;

/// Load generator for Juntos messaging (scenarios `pairs` and `group`).
///
/// Scenario `pairs` (the default): P sender/receiver pairs of signed-in devices; each sender
/// sends M messages to its receiver with up to W sends in flight, really encrypted and really
/// decrypted, through the gateway. Prints one JSON object per run on stdout: delivered messages
/// per second (first send to last delivery), send-to-deliver latency p50/p99/p999 in ms, losses
/// (acknowledged sends never delivered), duplicates, reordered deliveries, the server's CPU
/// seconds per 1,000 messages and the machine's load average at the end.
///
/// Scenario `group` (`--scenario group --group-size N`, repeatable): N client-core clients
/// (the sender +1 201 555-0100 and N-1 receivers; numbers +1 AAA 555-01XX over area codes
/// 201…213) sign in (`signin_secs`, `--signin-tasks` at a time), the sender creates a group of
/// all of them (`Groups::create` (`client.groups()`)) and sends M group messages (default 20) with
/// `Groups::send_text`, one at a time: each is queued and then `Client::flush_outbox` is
/// awaited (the outbox sends in order, so this is the client's own pace). The first send also
/// hands the sender key to every member device over pairwise sessions (device lists, prekey
/// bundles, X3DH): its queue-to-stored time is `first_send_secs`, the time until every
/// receiver has it `first_delivered_secs`, and neither is in the steady-state figures, which
/// cover messages 2…M: `group_messages_per_sec` and `deliveries_per_sec` (messages × receivers)
/// from the first of them queued to the last delivery, send-to-deliver latency p50/p99/max
/// (queued at the sender to found at the receiver), the server's CPU seconds per 1,000
/// deliveries. Also losses (stored sends some receiver never got within the drain timeout),
/// duplicates, history mismatches (events or polls against `Client::group_history`) and memory.
///
/// How group receivers receive (`--receive`): `poll` (the default, lighter on a small machine):
/// no receiver holds a connection; `--poll-tasks` tasks (default 16) each own every K-th
/// receiver and call `Client::sync_now` on each of theirs that still misses a message, one after
/// the other, pausing 20 ms after a round that brought nothing; a delivery counts when the
/// sync that fetched it returns (the message is then in `Client::group_history`). So latency
/// includes the polling cycle. `live`: every receiver calls `Client::start` (a live `Connect`
/// stream each) and a delivery counts at its `Event::MessageReceived`.
///
/// Where the system comes from: by default every run starts its own `juntos all` (fresh data
/// directory, SQLite, every rate limit raised, console SMS). `--pods N` (repeatable) instead
/// starts separate roles through the test harness: otp, login, N chat pods and one gateway,
/// sharing one redis-server (codes, routing, doorbells) and one SecantusDB (MongoDB protocol,
/// from .venv; or the server at JUNTOS_TEST_MONGODB_URI) for login and every chat pod, so a
/// sender on one pod reaches receivers on others; `--pods 1` is the same production-like
/// backends with one pod, to compare with. Each JSON line names `pods`, `backend` and
/// `topology`; server CPU is that of every `juntos` process of the system, and
/// `backend_cpu_*` that of redis-server and SecantusDB. The binary is `$JUNTOS_BIN` when set;
/// otherwise the bench runs `cargo build --release -p juntos-server --bin juntos` and uses the
/// release binary it built.
///
/// With `--server URL` the bench uses a running system instead and reads sign-in codes from
/// `--data-dir DIR` (the server's `DIR/sms-outbox.jsonl`, so it must use `--sms console`).
/// Such a server needs its limits raised like the spawned one: `--ip-rate`, `--ip-burst`,
/// `--user-rate`, `--user-burst`, `--chat-send-rate`, `--chat-send-burst`,
/// `--otp-ip-limit-per-hour` and `--otp-country-budget-per-hour` of 1000000, and (to run more
/// than once) a short `--otp-resend-schedule-secs` and a high `--otp-max-codes-per-day`.
/// Devices are signed out at the end of each run. Give `--server-pid` to measure the server's
/// CPU time.
#[derive(Debug, Parser)]
#[command(name = "juntos-bench", verbatim_doc_comment)]
struct Args {
    /// What to measure: `pairs` (one-to-one messages) or `group` (fan-out to a group).
    #[arg(long, value_enum, default_value_t = Scenario::Pairs)]
    scenario: Scenario,
    /// Sender/receiver pairs, 1–50 (scenario `pairs`). Repeat the flag to run several sizes in
    /// one go (`--pairs 1 --pairs 10 --pairs 50`), each on a fresh system (without `--server`).
    #[arg(long, default_values_t = [10u32], value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAIRS)))]
    pairs: Vec<u32>,
    /// Members of the group, sender included, 2–1024 (scenario `group`). Repeatable
    /// (`--group-size 10 --group-size 100 --group-size 1000`), each on a fresh system.
    #[arg(long, default_values_t = [10u32], value_parser = clap::value_parser!(u32).range(2..=i64::from(MAX_GROUP_SIZE)))]
    group_size: Vec<u32>,
    /// Run the system as separate roles with N chat pods behind one gateway on one Redis and
    /// one SecantusDB, 1–16, instead of `juntos all` on SQLite. Repeatable (`--pods 1 --pods 3`).
    #[arg(long, conflicts_with = "server", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PODS)))]
    pods: Vec<u32>,
    /// Messages each sender sends (default 10000 for `pairs`, 20 for `group`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Sends each sender keeps in flight (scenario `pairs`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    window: u32,
    /// Plaintext bytes per message (at least 16: sequence number and send time; `pairs`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=60_000))]
    payload_bytes: u32,
    /// How group receivers receive: `poll` (`Client::sync_now` from a few tasks) or `live`
    /// (`Client::start`: one live connection each).
    #[arg(long, value_enum, default_value_t = Receive::Poll)]
    receive: Receive,
    /// Concurrent polling tasks for `--receive poll`.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    poll_tasks: u32,
    /// Concurrent sign-ins (scenario `group`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    signin_tasks: u32,
    /// Use the running system behind this gateway URL (e.g. http://127.0.0.1:7700) instead of
    /// starting `juntos all`.
    #[arg(long, requires = "data_dir")]
    server: Option<String>,
    /// The running server's data directory (for `sms-outbox.jsonl`); needs `--server`.
    #[arg(long, requires = "server")]
    data_dir: Option<PathBuf>,
    /// The running server's process id, to measure its CPU time; needs `--server`.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// Seconds to wait for deliveries after the last send was answered (`group`: without a new
    /// delivery).
    #[arg(long, default_value_t = 10)]
    drain_timeout_secs: u64,
}

impl Args {
    fn messages(&self) -> u64 {
        self.messages.unwrap_or(match self.scenario {
            Scenario::Pairs => 10_000,
            Scenario::Group => 20,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Pairs,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Receive {
    Poll,
    Live,
}

impl Receive {
    fn name(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Live => "live",
        }
    }
}

/// Runs `juntos-bench` with the process's arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let bin = if args.server.is_none() {
        match system::juntos_binary() {
            Ok(bin) => Some(bin),
            Err(e) => {
                eprintln!("juntos-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        // Without --pods: `juntos all` (or --server); with it, each pod count in turn.
        let layouts: Vec<Option<u32>> = if args.pods.is_empty() {
            vec![None]
        } else {
            args.pods.iter().copied().map(Some).collect()
        };
        for &pods in &layouts {
            let sizes = match args.scenario {
                Scenario::Pairs => &args.pairs,
                Scenario::Group => &args.group_size,
            };
            for &size in sizes {
                let label = match (args.scenario, pods) {
                    (Scenario::Pairs, None) => format!("pairs={size}"),
                    (Scenario::Pairs, Some(n)) => format!("pods={n} pairs={size}"),
                    (Scenario::Group, None) => format!("group={size}"),
                    (Scenario::Group, Some(n)) => format!("pods={n} group={size}"),
                };
                let result = match args.scenario {
                    Scenario::Pairs => pairs::run(&args, pods, size, &label, bin.as_deref()).await,
                    Scenario::Group => group::run(&args, pods, size, &label, bin.as_deref()).await,
                };
                match result {
                    Ok(report) => println!("{report}"),
                    Err(e) => {
                        eprintln!("juntos-bench: {label}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        ExitCode::SUCCESS
    })
}
