//! `juntos-bench`: a load generator for Juntos messaging.
//!
//! Scenario `pairs`: P sender/receiver pairs of signed-in devices; every sender sends M messages
//! to its receiver with up to W `Chat.Send` calls in flight, each message really encrypted
//! (X3DH + Double Ratchet from client-core) and really decrypted by the receiver, which holds a
//! live `Chat.Connect` stream and acks cumulatively. Everything goes through the gateway, as an
//! app's traffic does. One JSON object per run goes to stdout; progress goes to stderr.
//!
//! Setup uses raw gRPC instead of client-core's `Client`, because the data path needs W sends of
//! one device in flight at once.
//!
//! Scenario `group`: one sender and N-1 receivers, every one a client-core `Client` with its own
//! home, in one group made with `Client::create_group`; the sender sends M group messages with
//! `Client::send_group_text` (sender-key encryption; the first also hands the sender key to
//! every member device pairwise), and the receivers poll with `Client::sync_now` (or keep live
//! connections) until every member has every message.
//!
//! `--pods N` runs the system as separate roles (otp, login, N chat pods, one gateway) on one
//! Redis and one SecantusDB started by the harness, instead of `juntos all` on SQLite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use juntos_client::crypto::{
    CryptoError, IdentityKeyPair, InMemoryPrekeys, OneTimePrekeyPair, RemoteBundle, Session,
    SignedPrekeyPair,
};
use juntos_client::{Client, ClientError, Event, EventListener, Message, MessageStatus};
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{
    ClientFrame, Envelope, Heartbeat, OutgoingEnvelope, SendRequest, ServerFrame, client_frame,
    server_frame,
};
use juntos_proto::login::v1::directory_client::DirectoryClient;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{
    DeviceInfo, FetchBundlesRequest, Platform, SignInRequest, SignOutRequest, UploadPrekeysRequest,
};
use juntos_proto::otp::v1::RequestCodeRequest;
use juntos_proto::otp::v1::otp_client::OtpClient;
use juntos_tests::raw::authed;
use juntos_tests::{MongoTestServer, System};
use rand::RngCore;
use rand::rngs::OsRng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// The most pairs: the sign-in numbers are +1 201 555-0100 … 0199, two per pair.
const MAX_PAIRS: u32 = 50;
/// A receiver acks after this many envelopes…
const ACK_EVERY: u64 = 64;
/// …or after this long without a new one.
const ACK_IDLE: Duration = Duration::from_millis(20);
/// One-time prekeys each device uploads (each pair consumes one).
const ONE_TIME_PREKEYS: u32 = 10;
/// Attempts per message when the server answers UNAVAILABLE or RESOURCE_EXHAUSTED.
const SEND_ATTEMPTS: u32 = 5;
/// Payload header: 8-byte sequence number and 8-byte send time.
const HEADER_BYTES: usize = 16;
/// A limit high enough never to bite during a run.
const UNLIMITED: &str = "1000000";
/// The most chat pods `--pods` starts.
const MAX_PODS: u32 = 16;
/// The most members of a group (the chat service's cap).
const MAX_GROUP_SIZE: u32 = 1024;
/// Area codes of the group scenario's numbers: +1 <area> 555-0100 … 0199 (fictional), 100 per
/// area code.
const GROUP_AREA_CODES: [u32; 11] = [201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213];
/// `flush_outbox` tries per group message before the run gives up.
const FLUSH_ATTEMPTS: u32 = 5;
/// How long live receivers may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

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
/// all of them (`Client::create_group`) and sends M group messages (default 20) with
/// `Client::send_group_text`, one at a time: each is queued and then `Client::flush_outbox` is
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

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// A call to the system failed.
    #[error("{what}: {status}")]
    Rpc {
        what: &'static str,
        status: tonic::Status,
    },
    /// The gateway could not be reached.
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    /// Key material from the directory was refused.
    #[error("{what}: {source}")]
    Crypto {
        what: &'static str,
        source: CryptoError,
    },
    /// A client-core call failed.
    #[error("{what}: {source}")]
    Client {
        what: &'static str,
        source: ClientError,
    },
    /// Anything else that stops a run.
    #[error("{0}")]
    Setup(String),
    /// A task of the run panicked or was cancelled.
    #[error("task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn rpc(what: &'static str) -> impl FnOnce(tonic::Status) -> BenchError {
    move |status| BenchError::Rpc { what, status }
}

fn crypto(what: &'static str) -> impl FnOnce(CryptoError) -> BenchError {
    move |source| BenchError::Crypto { what, source }
}

fn client_err(what: &'static str) -> impl FnOnce(ClientError) -> BenchError {
    move |source| BenchError::Client { what, source }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bin = if args.server.is_none() {
        match juntos_binary() {
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
                    Scenario::Pairs => run(&args, pods, size, &label, bin.as_deref()).await,
                    Scenario::Group => run_group(&args, pods, size, &label, bin.as_deref()).await,
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

/// The `juntos` binary for spawned systems: `$JUNTOS_BIN`, or a fresh release build. Sets
/// `JUNTOS_BIN` for the harness. Runs before any other thread exists.
fn juntos_binary() -> Result<PathBuf, BenchError> {
    if let Some(bin) = std::env::var_os("JUNTOS_BIN") {
        let bin = PathBuf::from(bin);
        eprintln!("juntos-bench: using JUNTOS_BIN={}", bin.display());
        return Ok(bin);
    }
    eprintln!("juntos-bench: cargo build --release -p juntos-server --bin juntos");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "juntos-server",
            "--bin",
            "juntos",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BenchError::Setup(format!("running cargo: {e}")))?;
    if !output.status.success() {
        return Err(BenchError::Setup("building juntos failed".to_owned()));
    }
    // The build's JSON messages name the executable wherever the target directory is.
    let bin = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "juntos")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| BenchError::Setup("cargo did not report the juntos binary".to_owned()))?;
    eprintln!("juntos-bench: using {}", bin.display());
    // SAFETY: called from `main` before the runtime or any other thread exists, so nothing
    // reads the environment concurrently.
    unsafe { std::env::set_var("JUNTOS_BIN", &bin) };
    Ok(bin)
}

/// The system a run talks to.
enum Target {
    /// A system started for this run: `juntos all` (`pods` None) or separate roles with
    /// `pods` chat pods on Redis and SecantusDB.
    Spawned { sys: Box<System>, pods: Option<u32> },
    /// A running system.
    Remote {
        url: String,
        data_dir: PathBuf,
        pid: Option<u32>,
    },
}

/// CPU seconds so far of the system's processes.
#[derive(Clone, Copy, Default)]
struct SystemCpu {
    /// Every `juntos` process (or `--server-pid`).
    juntos: Option<f64>,
    /// redis-server and SecantusDB, when the run started them.
    backend: Option<f64>,
}

impl Target {
    /// The run's system: `--server`, or a fresh one with every limit raised.
    async fn start(args: &Args, pods: Option<u32>, label: &str) -> Self {
        if let Some(url) = &args.server {
            return Self::Remote {
                url: url.clone(),
                data_dir: args.data_dir.clone().expect("clap requires --data-dir"),
                pid: args.server_pid,
            };
        }
        let mut builder = System::builder();
        match pods {
            None => eprintln!("juntos-bench: {label}: starting juntos all"),
            Some(n) => {
                eprintln!(
                    "juntos-bench: {label}: starting otp, login, {n} chat pod(s) and a gateway \
                     on redis-server and SecantusDB"
                );
                builder = builder.chat_pods(n as usize).with_redis().with_mongodb();
            }
        }
        for flag in [
            "--ip-rate",
            "--ip-burst",
            "--user-rate",
            "--user-burst",
            "--chat-send-rate",
            "--chat-send-burst",
            "--otp-ip-limit-per-hour",
            "--otp-country-budget-per-hour",
        ] {
            builder = builder.arg(flag, UNLIMITED);
        }
        Self::Spawned {
            sys: Box::new(builder.start().await),
            pods,
        }
    }

    fn url(&self) -> &str {
        match self {
            Self::Spawned { sys, .. } => &sys.gateway_url,
            Self::Remote { url, .. } => url,
        }
    }

    fn outbox(&self) -> PathBuf {
        match self {
            Self::Spawned { sys, .. } => sys.data_dir().join("sms-outbox.jsonl"),
            Self::Remote { data_dir, .. } => data_dir.join("sms-outbox.jsonl"),
        }
    }

    /// The `server` field of a report.
    fn server(&self) -> String {
        match self {
            Self::Spawned { pods: None, .. } => "spawned juntos all".to_owned(),
            Self::Spawned { pods: Some(_), .. } => "spawned split roles".to_owned(),
            Self::Remote { url, .. } => url.clone(),
        }
    }

    /// Chat pods (None for a running system).
    fn pods(&self) -> Option<u32> {
        match self {
            Self::Spawned { pods, .. } => Some(pods.unwrap_or(1)),
            Self::Remote { .. } => None,
        }
    }

    /// Where login and chat keep their data, and what routes between pods.
    fn backend(&self) -> String {
        match self {
            Self::Spawned { pods: None, .. } => "sqlite".to_owned(),
            Self::Spawned { sys, .. } => match &sys.mongodb {
                Some(MongoTestServer::External(_)) => "redis+mongodb".to_owned(),
                _ => "redis+secantusdb".to_owned(),
            },
            Self::Remote { .. } => "unknown".to_owned(),
        }
    }

    /// The processes of the system.
    fn topology(&self) -> String {
        match self {
            Self::Spawned { pods: None, .. } => "juntos all".to_owned(),
            Self::Spawned { pods: Some(n), .. } => {
                format!("otp + login + {n} chat + gateway")
            }
            Self::Remote { .. } => "unknown".to_owned(),
        }
    }

    /// CPU seconds of the system so far: the processes this bench started (every descendant;
    /// `juntos` ones apart from the rest), or `--server-pid`.
    fn cpu(&self) -> SystemCpu {
        match self {
            Self::Spawned { .. } => {
                let mut cpu = SystemCpu::default();
                for process in descendants() {
                    let slot = if process.comm == "juntos" {
                        &mut cpu.juntos
                    } else {
                        &mut cpu.backend
                    };
                    *slot = Some(slot.unwrap_or(0.0) + process.cpu_secs);
                }
                cpu
            }
            Self::Remote { pid, .. } => SystemCpu {
                juntos: pid.and_then(cpu_seconds),
                backend: None,
            },
        }
    }

    /// Resident memory of the `juntos` processes now, MiB (spawned systems only).
    fn juntos_rss_mib(&self) -> Option<f64> {
        match self {
            Self::Spawned { .. } => Some(
                descendants()
                    .iter()
                    .filter(|p| p.comm == "juntos")
                    .filter_map(|p| status_kib(p.pid, "VmRSS:"))
                    .sum::<f64>()
                    / 1024.0,
            ),
            Self::Remote { .. } => None,
        }
    }
}

/// One signed-in bench device with its keys.
struct Device {
    user_id: String,
    device_id: String,
    access_token: String,
    identity: IdentityKeyPair,
    prekeys: InMemoryPrekeys,
    channel: Channel,
}

/// One run of the `pairs` scenario on a fresh (or the given) system; its JSON report line.
async fn run(
    args: &Args,
    pods: Option<u32>,
    pairs: u32,
    label: &str,
    bin: Option<&Path>,
) -> Result<String, BenchError> {
    let target = Target::start(args, pods, label).await;

    let setup_started = Instant::now();
    eprintln!(
        "juntos-bench: {label}: signing in {} devices via {}",
        2 * pairs,
        target.url()
    );
    let outbox = Arc::new(target.outbox());
    let mut sign_ins = tokio::task::JoinSet::new();
    for index in 0..2 * pairs {
        let url = target.url().to_owned();
        let outbox = Arc::clone(&outbox);
        sign_ins.spawn(async move { (index, sign_in_device(&url, &outbox, index).await) });
    }
    let mut devices: Vec<Option<Device>> = (0..2 * pairs).map(|_| None).collect();
    while let Some(joined) = sign_ins.join_next().await {
        let (index, device) = joined?;
        devices[index as usize] = Some(device?);
    }
    let devices: Vec<Device> = devices
        .into_iter()
        .map(|d| d.expect("every device signed in"))
        .collect();
    let (senders, receivers) = devices.split_at(pairs as usize);

    // Each sender starts a session with its receiver's one device.
    let mut sessions = Vec::with_capacity(pairs as usize);
    for (sender, receiver) in senders.iter().zip(receivers) {
        let bundles = DirectoryClient::new(sender.channel.clone())
            .fetch_bundles(authed(
                FetchBundlesRequest {
                    user_id: receiver.user_id.clone(),
                },
                &sender.access_token,
            ))
            .await
            .map_err(rpc("FetchBundles"))?
            .into_inner()
            .bundles;
        let [bundle] = bundles.as_slice() else {
            return Err(BenchError::Setup(format!(
                "a bench user has {} devices, not 1 (devices left from an earlier run? use a \
                 fresh data directory)",
                bundles.len()
            )));
        };
        if bundle.device_id != receiver.device_id {
            return Err(BenchError::Setup(
                "the directory lists another device than the one signed in".to_owned(),
            ));
        }
        let remote = RemoteBundle::try_from(bundle).map_err(crypto("receiver bundle"))?;
        sessions.push(
            Session::initiate(&sender.identity, &remote, &mut OsRng)
                .map_err(crypto("Session::initiate"))?,
        );
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    eprintln!("juntos-bench: {label}: setup took {setup_secs:.2} s");

    // The data phase: receivers connect first, then every sender starts.
    let messages = args.messages();
    let clock = Instant::now();
    let progress = Arc::new(Progress::default());
    let (stop, stopped) = watch::channel(false);
    let mut receiving = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        let inbound = Inbound::connect(receiver).await?;
        receiving.push(tokio::spawn(inbound.run(
            receiver.identity.clone(),
            receiver.prekeys.clone(),
            messages,
            clock,
            Arc::clone(&progress),
            stopped.clone(),
        )));
    }
    let server_cpu_before = target.cpu();
    let bench_cpu_before = cpu_seconds_of("/proc/self/stat");
    let nonce = format!("{:016x}", OsRng.next_u64());
    let mut sending = Vec::with_capacity(senders.len());
    for (pair, ((sender, receiver), session)) in
        senders.iter().zip(receivers).zip(sessions).enumerate()
    {
        let outbound = Outbound {
            chat: ChatClient::new(sender.channel.clone()),
            access_token: sender.access_token.clone(),
            recipient_user_id: receiver.user_id.clone(),
            recipient_device_id: receiver.device_id.clone(),
            id_prefix: format!("{nonce}-{pair}-"),
        };
        sending.push(tokio::spawn(outbound.run(
            session,
            messages,
            args.window,
            args.payload_bytes as usize,
            clock,
            Arc::clone(&progress),
        )));
    }

    // Wait for every delivery, or for the drain timeout after the last answered send.
    let total = u64::from(pairs) * messages;
    let mut sends_done_at = None;
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let delivered = progress.delivered.load(Ordering::Relaxed);
        let answered = progress.answered.load(Ordering::Relaxed);
        let acked = progress.acked.load(Ordering::Relaxed);
        if answered == total && sends_done_at.is_none() {
            sends_done_at = Some(Instant::now());
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "juntos-bench: {label}: {:.1} s: sent {acked}/{total}, delivered {delivered}",
                clock.elapsed().as_secs_f64()
            );
        }
        if delivered >= total {
            break;
        }
        if let Some(done) = sends_done_at
            && (delivered >= acked
                || done.elapsed() >= Duration::from_secs(args.drain_timeout_secs))
        {
            break;
        }
    }
    let server_cpu_after = target.cpu();
    let bench_cpu_after = cpu_seconds_of("/proc/self/stat");
    // A little longer, so late duplicates show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(true);

    let mut sent = Vec::with_capacity(sending.len());
    for task in sending {
        sent.push(task.await?);
    }
    let mut received = Vec::with_capacity(receiving.len());
    for task in receiving {
        received.push(task.await??);
    }
    let loadavg = load_average();

    if let Target::Remote { .. } = target {
        for device in senders.iter().chain(receivers) {
            let _ = LoginClient::new(device.channel.clone())
                .sign_out(authed(SignOutRequest {}, &device.access_token))
                .await;
        }
    }

    let report = Report::new(&sent, &received);
    let cpu_per_1000 = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) if report.delivered > 0 => {
            Some((a - b) * 1000.0 / report.delivered as f64)
        }
        _ => None,
    };
    let ms = |q: f64| report.latency_ms(q).map(|v| round(v, 3));
    let line = RunLine {
        scenario: "pairs",
        pairs,
        messages,
        window: args.window,
        payload_bytes: args.payload_bytes,
        pods: target.pods(),
        backend: target.backend(),
        topology: target.topology(),
        server: target.server(),
        juntos_bin: bin.map(|b| b.display().to_string()),
        setup_secs: round(setup_secs, 3),
        sent: total,
        acked: report.acked,
        send_failures: report.send_failures,
        send_retries: report.send_retries,
        delivered: report.delivered,
        duration_secs: round(report.duration_secs, 3),
        delivered_per_sec: round(report.delivered_per_sec(), 1),
        latency_p50_ms: ms(0.50),
        latency_p99_ms: ms(0.99),
        latency_p999_ms: ms(0.999),
        latency_max_ms: ms(1.0),
        losses: report.losses,
        duplicates: report.duplicates,
        reordered: report.reordered,
        decrypt_failures: report.decrypt_failures,
        server_cpu_secs_per_1000: cpu_per_1000(server_cpu_before.juntos, server_cpu_after.juntos)
            .map(|v| round(v, 5)),
        backend_cpu_secs_per_1000: cpu_per_1000(
            server_cpu_before.backend,
            server_cpu_after.backend,
        )
        .map(|v| round(v, 5)),
        bench_cpu_secs_per_1000: cpu_per_1000(bench_cpu_before, bench_cpu_after)
            .map(|v| round(v, 5)),
        loadavg,
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    };
    eprintln!(
        "juntos-bench: {label}: {} delivered in {:.2} s ({:.0}/s), {} lost",
        report.delivered,
        report.duration_secs,
        report.delivered_per_sec(),
        report.losses
    );
    drop(target);
    Ok(serde_json::to_string(&line).expect("a report serializes"))
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// The sign-in number of bench device `index` (+1 201 555-0100 onwards, a fictional range).
fn phone(index: u32) -> String {
    format!("+1201555{:04}", 100 + index)
}

/// Requests a code, signs in with fresh identity keys and uploads prekeys.
async fn sign_in_device(url: &str, outbox: &Path, index: u32) -> Result<Device, BenchError> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| BenchError::Connect {
            url: url.to_owned(),
            source: e,
        })?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| BenchError::Connect {
            url: url.to_owned(),
            source: e,
        })?;
    let phone = phone(index);
    let codes_before = codes_sent(outbox, &phone).len();
    OtpClient::new(channel.clone())
        .request_code(RequestCodeRequest {
            phone: phone.clone(),
        })
        .await
        .map_err(rpc("RequestCode"))?;
    let code = wait_for_code(outbox, &phone, codes_before).await?;

    let identity = IdentityKeyPair::generate(&mut OsRng);
    let public = identity.public();
    let signed_in = LoginClient::new(channel.clone())
        .sign_in(SignInRequest {
            phone,
            code,
            device: Some(DeviceInfo {
                name: format!("bench-{index}"),
                platform: Platform::Linux as i32,
                identity_signing_key: public.signing.to_vec(),
                identity_dh_key: public.dh.to_vec(),
            }),
        })
        .await
        .map_err(rpc("SignIn"))?
        .into_inner();
    let access_token = signed_in
        .tokens
        .ok_or_else(|| BenchError::Setup("SignIn answered without tokens".to_owned()))?
        .access_token;

    let signed = SignedPrekeyPair::generate(&identity, 1, &mut OsRng);
    let one_time = OneTimePrekeyPair::generate_batch(1, ONE_TIME_PREKEYS, &mut OsRng);
    DirectoryClient::new(channel.clone())
        .upload_prekeys(authed(
            UploadPrekeysRequest {
                signed_prekey: Some(signed.to_proto()),
                one_time_prekeys: one_time.iter().map(OneTimePrekeyPair::to_proto).collect(),
            },
            &access_token,
        ))
        .await
        .map_err(rpc("UploadPrekeys"))?;
    let mut prekeys = InMemoryPrekeys::new();
    prekeys.add_signed(signed);
    for key in one_time {
        prekeys.add_one_time(key);
    }
    Ok(Device {
        user_id: signed_in.user_id,
        device_id: signed_in.device_id,
        access_token,
        identity,
        prekeys,
        channel,
    })
}

/// The bodies of every SMS the console outbox holds for `phone`, oldest first.
fn codes_sent(outbox: &Path, phone: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(outbox) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["to"] == phone)
        .filter_map(|v| v["body"].as_str().map(str::to_owned))
        .collect()
}

/// The code of the first SMS to `phone` after the `before` it already had.
async fn wait_for_code(outbox: &Path, phone: &str, before: usize) -> Result<String, BenchError> {
    for _ in 0..500 {
        if let Some(body) = codes_sent(outbox, phone).get(before) {
            return juntos_tests::extract_code(body)
                .ok_or_else(|| BenchError::Setup("an SMS without a 6-digit code".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(BenchError::Setup(format!(
        "no code appeared in {} (does the server use --sms console with this data directory?)",
        outbox.display()
    )))
}

/// Counters every task updates, for progress and the end condition.
#[derive(Default)]
struct Progress {
    /// Sends answered, successfully or not.
    answered: AtomicU64,
    /// Sends the server acknowledged.
    acked: AtomicU64,
    /// Distinct messages delivered.
    delivered: AtomicU64,
}

/// What one sender saw.
struct SendOutcome {
    /// Which sequence numbers the server acknowledged.
    acked: Vec<bool>,
    failures: u64,
    retries: u64,
    /// When the first message was encrypted, ns on the run's clock.
    first_send_ns: u64,
}

/// A sender's side of a pair.
struct Outbound {
    chat: ChatClient<Channel>,
    access_token: String,
    recipient_user_id: String,
    recipient_device_id: String,
    id_prefix: String,
}

impl Outbound {
    /// Encrypts `messages` messages one after the other (the ratchet is sequential) and keeps up
    /// to `window` sends in flight.
    async fn run(
        self,
        mut session: Session,
        messages: u64,
        window: u32,
        payload_bytes: usize,
        clock: Instant,
        progress: Arc<Progress>,
    ) -> SendOutcome {
        let this = Arc::new(self);
        let in_flight = Arc::new(Semaphore::new(window as usize));
        let acked: Arc<Vec<AtomicBool>> =
            Arc::new((0..messages).map(|_| AtomicBool::new(false)).collect());
        let failures = Arc::new(AtomicU64::new(0));
        let retries = Arc::new(AtomicU64::new(0));
        let mut first_send_ns = None;
        let mut payload = vec![0u8; payload_bytes.max(HEADER_BYTES)];
        for seq in 0..messages {
            let permit = Arc::clone(&in_flight)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let sent_ns = nanos_since(clock);
            first_send_ns.get_or_insert(sent_ns);
            payload[..8].copy_from_slice(&seq.to_le_bytes());
            payload[8..16].copy_from_slice(&sent_ns.to_le_bytes());
            let ciphertext = match session.encrypt(&payload, unix_ms()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("juntos-bench: encrypt failed: {e}");
                    failures.fetch_add(1, Ordering::Relaxed);
                    progress.answered.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let request = SendRequest {
                client_msg_id: format!("{}{seq}", this.id_prefix),
                envelopes: vec![OutgoingEnvelope {
                    recipient_user_id: this.recipient_user_id.clone(),
                    recipient_device_id: this.recipient_device_id.clone(),
                    ciphertext,
                }],
            };
            let this = Arc::clone(&this);
            let acked = Arc::clone(&acked);
            let failures = Arc::clone(&failures);
            let retries = Arc::clone(&retries);
            let progress = Arc::clone(&progress);
            tokio::spawn(async move {
                let mut chat = this.chat.clone();
                for attempt in 1..=SEND_ATTEMPTS {
                    match chat.send(authed(request.clone(), &this.access_token)).await {
                        Ok(_) => {
                            acked[seq as usize].store(true, Ordering::Relaxed);
                            progress.acked.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(status) if attempt < SEND_ATTEMPTS && retryable(&status) => {
                            if retries.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("juntos-bench: Chat.Send will be retried: {status}");
                            }
                            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                        }
                        Err(status) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("juntos-bench: Chat.Send failed: {status}");
                            }
                            break;
                        }
                    }
                }
                progress.answered.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        // Every send is answered once all permits are back.
        let _all = in_flight
            .acquire_many(window)
            .await
            .expect("the semaphore is never closed");
        SendOutcome {
            acked: acked.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
            failures: failures.load(Ordering::Relaxed),
            retries: retries.load(Ordering::Relaxed),
            first_send_ns: first_send_ns.unwrap_or(0),
        }
    }
}

fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted | tonic::Code::Aborted
    )
}

/// What one receiver saw.
struct ReceiveOutcome {
    /// Which sequence numbers arrived.
    seen: Vec<bool>,
    /// Send-to-deliver latency of each first delivery, ns.
    latencies_ns: Vec<u64>,
    duplicates: u64,
    reordered: u64,
    decrypt_failures: u64,
    /// When the last new message arrived, ns on the run's clock.
    last_delivery_ns: u64,
}

/// A receiver's live connection.
struct Inbound {
    frames: mpsc::Sender<ClientFrame>,
    stream: tonic::Streaming<ServerFrame>,
}

impl Inbound {
    /// Opens `Chat.Connect` for `device`.
    async fn connect(device: &Device) -> Result<Self, BenchError> {
        let (frames, outgoing) = mpsc::channel(64);
        let stream = ChatClient::new(device.channel.clone())
            .connect(authed(ReceiverStream::new(outgoing), &device.access_token))
            .await
            .map_err(rpc("Chat.Connect"))?
            .into_inner();
        Ok(Self { frames, stream })
    }

    /// Decrypts every envelope and acks cumulatively (every [`ACK_EVERY`] envelopes or after
    /// [`ACK_IDLE`] without one), until `stop`.
    async fn run(
        mut self,
        identity: IdentityKeyPair,
        prekeys: InMemoryPrekeys,
        messages: u64,
        clock: Instant,
        progress: Arc<Progress>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ReceiveOutcome, BenchError> {
        let mut outcome = ReceiveOutcome {
            seen: vec![false; messages as usize],
            latencies_ns: Vec::with_capacity(messages as usize),
            duplicates: 0,
            reordered: 0,
            decrypt_failures: 0,
            last_delivery_ns: 0,
        };
        let mut sessions: HashMap<String, Session> = HashMap::new();
        let mut highest_seq: Option<u64> = None;
        let mut last_mailbox_seq = 0;
        let mut unacked = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                frame = self.stream.next() => {
                    let frame = match frame {
                        Some(Ok(ServerFrame { frame: Some(frame) })) => frame,
                        Some(Ok(ServerFrame { frame: None })) => continue,
                        Some(Err(status)) => {
                            return Err(BenchError::Rpc { what: "Chat.Connect stream", status });
                        }
                        None => break,
                    };
                    match frame {
                        server_frame::Frame::Envelope(envelope) => {
                            last_mailbox_seq = envelope.seq;
                            unacked += 1;
                            let opened = open(&envelope, &identity, &prekeys, &mut sessions);
                            let now_ns = nanos_since(clock);
                            match opened {
                                Ok((seq, sent_ns)) if seq < messages => {
                                    if outcome.seen[seq as usize] {
                                        outcome.duplicates += 1;
                                    } else {
                                        outcome.seen[seq as usize] = true;
                                        outcome.last_delivery_ns = now_ns;
                                        outcome.latencies_ns.push(now_ns.saturating_sub(sent_ns));
                                        progress.delivered.fetch_add(1, Ordering::Relaxed);
                                        if highest_seq.is_some_and(|h| seq < h) {
                                            outcome.reordered += 1;
                                        }
                                        highest_seq = highest_seq.max(Some(seq));
                                    }
                                }
                                Ok(_) => outcome.decrypt_failures += 1,
                                // The ratchet refuses a message key used before: a redelivery.
                                Err(CryptoError::Duplicate) => outcome.duplicates += 1,
                                Err(_) => outcome.decrypt_failures += 1,
                            }
                            if unacked >= ACK_EVERY {
                                self.ack(last_mailbox_seq).await;
                                unacked = 0;
                            }
                        }
                        server_frame::Frame::Heartbeat(_) => {
                            let beat = client_frame::Frame::Heartbeat(Heartbeat { time_ms: unix_ms() });
                            let _ = self.frames.send(ClientFrame { frame: Some(beat) }).await;
                        }
                        server_frame::Frame::Replaced(_) => {
                            return Err(BenchError::Setup("the receiver's connection was replaced".to_owned()));
                        }
                        // The bench follows nobody's presence.
                        server_frame::Frame::Presence(_) => {}
                    }
                }
                () = tokio::time::sleep(ACK_IDLE), if unacked > 0 => {
                    self.ack(last_mailbox_seq).await;
                    unacked = 0;
                }
            }
        }
        if unacked > 0 {
            self.ack(last_mailbox_seq).await;
        }
        Ok(outcome)
    }

    async fn ack(&self, up_to: u64) {
        let frame = client_frame::Frame::AckUpTo(up_to);
        let _ = self.frames.send(ClientFrame { frame: Some(frame) }).await;
    }
}

/// Decrypts an envelope (accepting the session on the first message from its device); the
/// sequence number and send time the payload carries.
fn open(
    envelope: &Envelope,
    identity: &IdentityKeyPair,
    prekeys: &InMemoryPrekeys,
    sessions: &mut HashMap<String, Session>,
) -> Result<(u64, u64), CryptoError> {
    let plaintext = match sessions.get_mut(&envelope.sender_device_id) {
        Some(session) => session.decrypt(&envelope.ciphertext, unix_ms())?,
        None => {
            let accepted = Session::accept(identity, prekeys, &envelope.ciphertext, unix_ms())?;
            sessions.insert(envelope.sender_device_id.clone(), accepted.session);
            accepted.plaintext
        }
    };
    let header = |range: std::ops::Range<usize>| {
        plaintext
            .get(range)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or(CryptoError::InvalidMessage)
    };
    Ok((header(0..8)?, header(8..16)?))
}

/// Nanoseconds since the run's clock started.
fn nanos_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Unix milliseconds (the ratchet expires skipped keys by it).
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The JSON line of one run (field order as printed).
#[derive(serde::Serialize)]
struct RunLine {
    scenario: &'static str,
    pairs: u32,
    messages: u64,
    window: u32,
    payload_bytes: u32,
    /// Chat pods (1 for `juntos all`; null for `--server`).
    pods: Option<u32>,
    /// "sqlite" (`juntos all`), "redis+secantusdb" (`--pods`) or "unknown" (`--server`).
    backend: String,
    /// The processes: "juntos all" or "otp + login + N chat + gateway".
    topology: String,
    /// The gateway URL, or "spawned juntos all" / "spawned split roles".
    server: String,
    /// The binary of a spawned system.
    juntos_bin: Option<String>,
    /// Sign-ins, prekey uploads and session starts.
    setup_secs: f64,
    /// Messages the senders sent (pairs × messages).
    sent: u64,
    /// Sends the server answered with success.
    acked: u64,
    /// Sends that failed after their retries.
    send_failures: u64,
    /// Retries after UNAVAILABLE or RESOURCE_EXHAUSTED.
    send_retries: u64,
    /// Distinct messages delivered and decrypted.
    delivered: u64,
    /// First send to last delivery.
    duration_secs: f64,
    delivered_per_sec: f64,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_p999_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    /// Acknowledged sends never delivered within the drain timeout.
    losses: u64,
    /// Messages delivered more than once.
    duplicates: u64,
    /// Deliveries with a lower sequence number than one already delivered from that sender.
    reordered: u64,
    decrypt_failures: u64,
    /// Server user+system CPU seconds per 1,000 delivered messages, over the data phase (every
    /// `juntos` process of a spawned system).
    server_cpu_secs_per_1000: Option<f64>,
    /// The same for redis-server and SecantusDB (`--pods`).
    backend_cpu_secs_per_1000: Option<f64>,
    /// The same for this load generator.
    bench_cpu_secs_per_1000: Option<f64>,
    /// `/proc/loadavg` at the end: 1, 5 and 15 minutes.
    loadavg: Vec<f64>,
    cores: usize,
}

/// Everything a run measured, merged over its pairs.
struct Report {
    acked: u64,
    send_failures: u64,
    send_retries: u64,
    delivered: u64,
    losses: u64,
    duplicates: u64,
    reordered: u64,
    decrypt_failures: u64,
    duration_secs: f64,
    /// Sorted.
    latencies_ns: Vec<u64>,
}

impl Report {
    fn new(sent: &[SendOutcome], received: &[ReceiveOutcome]) -> Self {
        let mut report = Self {
            acked: 0,
            send_failures: 0,
            send_retries: 0,
            delivered: 0,
            losses: 0,
            duplicates: 0,
            reordered: 0,
            decrypt_failures: 0,
            duration_secs: 0.0,
            latencies_ns: Vec::new(),
        };
        for (out, got) in sent.iter().zip(received) {
            report.send_failures += out.failures;
            report.send_retries += out.retries;
            for (&acked, &seen) in out.acked.iter().zip(&got.seen) {
                report.acked += u64::from(acked);
                report.delivered += u64::from(seen);
                report.losses += u64::from(acked && !seen);
            }
            report.duplicates += got.duplicates;
            report.reordered += got.reordered;
            report.decrypt_failures += got.decrypt_failures;
            report.latencies_ns.extend_from_slice(&got.latencies_ns);
        }
        let first_send = sent.iter().map(|s| s.first_send_ns).min().unwrap_or(0);
        let last_delivery = received
            .iter()
            .map(|r| r.last_delivery_ns)
            .max()
            .unwrap_or(0);
        report.duration_secs = last_delivery.saturating_sub(first_send) as f64 / 1e9;
        report.latencies_ns.sort_unstable();
        report
    }

    fn delivered_per_sec(&self) -> f64 {
        if self.duration_secs > 0.0 {
            self.delivered as f64 / self.duration_secs
        } else {
            0.0
        }
    }

    /// The `q` quantile (nearest rank) of the send-to-deliver latency, in milliseconds.
    fn latency_ms(&self, q: f64) -> Option<f64> {
        quantile_ms(&self.latencies_ns, q)
    }
}

/// The `q` quantile (nearest rank) of sorted nanoseconds, in milliseconds.
fn quantile_ms(sorted_ns: &[u64], q: f64) -> Option<f64> {
    let n = sorted_ns.len();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted_ns[rank - 1] as f64 / 1e6)
}

/// User plus system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds from a `/proc/<pid>/stat` file.
fn cpu_seconds_of(path: &str) -> Option<f64> {
    Some(read_stat(path)?.cpu_secs)
}

/// What the bench reads of a `/proc/<pid>/stat` file.
struct ProcStat {
    pid: u32,
    comm: String,
    ppid: u32,
    /// User plus system CPU seconds.
    cpu_secs: f64,
}

fn read_stat(path: &str) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat[..open].trim().parse().ok()?;
    let comm = stat[open + 1..close].to_owned();
    // Fields after the parenthesised command name start at field 3 (state); ppid is field 4,
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        ppid,
        cpu_secs: (utime + stime) as f64 / clock_ticks_per_second(),
    })
}

/// Every live process descended from this one (the spawned system: `juntos` roles,
/// redis-server, SecantusDB).
fn descendants() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<ProcStat> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| read_stat(&format!("{}/stat", e.path().display())))
        .collect();
    let mut family = vec![std::process::id()];
    let mut found = Vec::new();
    let mut remaining = all;
    loop {
        let (children, rest): (Vec<ProcStat>, Vec<ProcStat>) = remaining
            .into_iter()
            .partition(|p| family.contains(&p.ppid));
        remaining = rest;
        if children.is_empty() {
            return found;
        }
        family.extend(children.iter().map(|p| p.pid));
        found.extend(children);
    }
}

/// A `kB` line (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The soft limit on open files of this process.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `getconf CLK_TCK` (100 on every common Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

// === scenario `group` ===

/// The sign-in number of group member `index`: +1 AAA 555-0100 … 0199 (fictional), 100 per
/// area code of [`GROUP_AREA_CODES`].
fn group_phone(index: u32) -> String {
    let area = GROUP_AREA_CODES[(index / 100) as usize];
    format!("+1{area}555{:04}", 100 + index % 100)
}

/// The console SMS outbox, read incrementally and shared by every sign-in (re-reading the
/// whole file per poll would cost more than the sign-ins with a thousand numbers).
struct Outbox {
    path: PathBuf,
    state: Mutex<OutboxState>,
}

#[derive(Default)]
struct OutboxState {
    /// Bytes of the file already read.
    offset: u64,
    /// An incomplete last line.
    partial: Vec<u8>,
    /// Every SMS body, by number, oldest first.
    bodies: HashMap<String, Vec<String>>,
}

impl Outbox {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(OutboxState::default()),
        }
    }

    /// The bodies sent to `phone` so far, after reading what was appended.
    fn with_bodies<T>(&self, phone: &str, f: impl FnOnce(&[String]) -> T) -> T {
        use std::io::{Read, Seek, SeekFrom};
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut file) = std::fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(state.offset)).is_ok()
        {
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_ok() {
                state.offset += bytes.len() as u64;
                state.partial.extend_from_slice(&bytes);
                while let Some(end) = state.partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = state.partial.drain(..=end).collect();
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if let (Some(to), Some(body)) = (v["to"].as_str(), v["body"].as_str()) {
                        state
                            .bodies
                            .entry(to.to_owned())
                            .or_default()
                            .push(body.to_owned());
                    }
                }
            }
        }
        f(state.bodies.get(phone).map_or(&[], Vec::as_slice))
    }

    fn count(&self, phone: &str) -> usize {
        self.with_bodies(phone, <[String]>::len)
    }

    /// The code of the first SMS to `phone` after the `before` it already had.
    async fn code_after(&self, phone: &str, before: usize) -> Result<String, BenchError> {
        for _ in 0..1000 {
            if let Some(body) = self.with_bodies(phone, |b| b.get(before).cloned()) {
                return juntos_tests::extract_code(&body)
                    .ok_or_else(|| BenchError::Setup("an SMS without a 6-digit code".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(BenchError::Setup(format!(
            "no code appeared in {} (does the server use --sms console with this data directory?)",
            self.path.display()
        )))
    }
}

/// A client-core client for member `index`, signed in with a fresh home.
async fn sign_in_member(
    url: &str,
    home: &Path,
    outbox: &Outbox,
    index: u32,
) -> Result<Arc<Client>, BenchError> {
    let home = home
        .to_str()
        .ok_or_else(|| BenchError::Setup("the temporary directory is not UTF-8".to_owned()))?;
    let member = Client::new(url.to_owned(), home.to_owned()).map_err(client_err("Client::new"))?;
    let phone = group_phone(index);
    let before = outbox.count(&phone);
    member
        .request_code(phone.clone())
        .await
        .map_err(client_err("request_code"))?;
    let code = outbox.code_after(&phone, before).await?;
    member
        .sign_in(phone, code, format!("bench-{index}"))
        .await
        .map_err(client_err("sign_in"))?;
    Ok(member)
}

/// What the receivers got, shared by their listeners or pollers.
struct Tracker {
    /// The run's mark in every message body.
    nonce: String,
    messages: u64,
    /// The run's clock.
    clock: Instant,
    /// `receiver * messages + seq`: delivered yet.
    seen: Vec<AtomicBool>,
    /// Distinct messages each receiver has.
    per_receiver: Vec<AtomicU64>,
    /// Receivers that have each message.
    per_message: Vec<AtomicU64>,
    /// When each message reached its last receiver, ns on the run's clock (0: not yet).
    complete_ns: Vec<AtomicU64>,
    receivers: u64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    undecryptable: AtomicU64,
    connected: AtomicU64,
    disconnects: AtomicU64,
    /// When the last new delivery happened, ns on the run's clock.
    last_delivery_ns: AtomicU64,
    /// Send-to-deliver latencies of messages 2…M, ns.
    latencies_ns: Mutex<Vec<u64>>,
}

impl Tracker {
    fn new(receivers: usize, messages: u64) -> Self {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            nonce: format!("{:016x}", OsRng.next_u64()),
            messages,
            clock: Instant::now(),
            seen: (0..receivers * messages as usize)
                .map(|_| AtomicBool::new(false))
                .collect(),
            per_receiver: counters(receivers),
            per_message: counters(messages as usize),
            complete_ns: counters(messages as usize),
            receivers: receivers as u64,
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            undecryptable: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            latencies_ns: Mutex::new(Vec::new()),
        }
    }

    /// The text of message `seq`, queued at `sent_ns`.
    fn body(&self, seq: u64, sent_ns: u64) -> String {
        format!("juntos-bench {} {seq} {sent_ns}", self.nonce)
    }

    /// The sequence number and send time of a message of this run.
    fn parse(&self, body: &str) -> Option<(u64, u64)> {
        let mut parts = body.split(' ');
        if parts.next()? != "juntos-bench" || parts.next()? != self.nonce {
            return None;
        }
        let seq: u64 = parts.next()?.parse().ok()?;
        let sent_ns = parts.next()?.parse().ok()?;
        (seq < self.messages).then_some((seq, sent_ns))
    }

    fn slot(&self, receiver: usize, seq: u64) -> &AtomicBool {
        &self.seen[receiver * self.messages as usize + seq as usize]
    }

    fn has(&self, receiver: usize, seq: u64) -> bool {
        self.slot(receiver, seq).load(Ordering::Relaxed)
    }

    fn complete(&self, receiver: usize) -> bool {
        self.per_receiver[receiver].load(Ordering::Relaxed) >= self.messages
    }

    /// Counts `body` (if a message of this run) as arrived at `receiver` at `now_ns`; a second
    /// arrival counts as a duplicate when `repeat_is_duplicate`.
    fn deliver(&self, receiver: usize, body: &str, now_ns: u64, repeat_is_duplicate: bool) {
        let Some((seq, sent_ns)) = self.parse(body) else {
            return;
        };
        if self.slot(receiver, seq).swap(true, Ordering::Relaxed) {
            if repeat_is_duplicate {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.per_receiver[receiver].fetch_add(1, Ordering::Relaxed);
        if self.per_message[seq as usize].fetch_add(1, Ordering::Relaxed) + 1 == self.receivers {
            self.complete_ns[seq as usize].store(now_ns, Ordering::Relaxed);
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_ns.fetch_max(now_ns, Ordering::Relaxed);
        if seq > 0 {
            self.latencies_ns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(now_ns.saturating_sub(sent_ns));
        }
    }

    /// Waits until `done`, or until no new delivery for `idle`; whether `done`.
    async fn wait(
        &self,
        label: &str,
        what: &str,
        idle: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        let mut seen = self.delivered.load(Ordering::Relaxed);
        let mut changed = Instant::now();
        let mut reported = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            let now = self.delivered.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                changed = Instant::now();
            } else if changed.elapsed() >= idle {
                return false;
            }
            if reported.elapsed() >= Duration::from_secs(1) {
                reported = Instant::now();
                eprintln!(
                    "juntos-bench: {label}: {:.1} s: {what}: {now}/{} deliveries",
                    self.clock.elapsed().as_secs_f64(),
                    self.receivers * self.messages
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A live receiver's listener.
struct Listener {
    receiver: usize,
    tracker: Arc<Tracker>,
}

impl EventListener for Listener {
    fn on_event(&self, event: Event) {
        let tracker = &self.tracker;
        match event {
            Event::MessageReceived { message } if message.group_id.is_some() => {
                let now_ns = nanos_since(tracker.clock);
                tracker.deliver(self.receiver, &message.body, now_ns, true);
            }
            Event::Undecryptable { .. } => {
                tracker.undecryptable.fetch_add(1, Ordering::Relaxed);
            }
            Event::Connected => {
                tracker.connected.fetch_add(1, Ordering::Relaxed);
            }
            Event::Disconnected { .. } => {
                tracker.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// A pause after a polling round that brought nothing.
const POLL_IDLE: Duration = Duration::from_millis(20);

/// One polling task: `sync_now` on each of its receivers that still misses a message, round
/// after round, until each has everything or `stop`. The number of syncs.
async fn poll_receivers(
    receivers: Vec<(usize, Arc<Client>)>,
    group_id: String,
    tracker: Arc<Tracker>,
    mut stop: watch::Receiver<bool>,
    errors: Arc<AtomicU64>,
) -> u64 {
    let limit = history_limit(tracker.messages);
    let mut syncs = 0;
    loop {
        let mut brought = false;
        let mut waiting = false;
        for (index, member) in &receivers {
            if *stop.borrow() {
                return syncs;
            }
            if tracker.complete(*index) {
                continue;
            }
            waiting = true;
            syncs += 1;
            let fetched = match member.sync_now().await {
                Ok(n) => n,
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("juntos-bench: sync_now failed: {e}");
                    }
                    continue;
                }
            };
            if fetched == 0 {
                continue;
            }
            brought = true;
            // Everything the sync fetched is applied when it returns.
            let now_ns = nanos_since(tracker.clock);
            match member.group_history(group_id.clone(), limit).await {
                Ok(history) => {
                    for message in history.iter().filter(|m| !m.outgoing) {
                        tracker.deliver(*index, &message.body, now_ns, false);
                    }
                }
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("juntos-bench: group_history failed: {e}");
                    }
                }
            }
        }
        if !waiting {
            return syncs;
        }
        if !brought {
            tokio::select! {
                () = tokio::time::sleep(POLL_IDLE) => {}
                _ = stop.changed() => return syncs,
            }
        }
    }
}

/// A `group_history` limit that covers every message of the run.
fn history_limit(messages: u64) -> u32 {
    u32::try_from(messages + 10).unwrap_or(u32::MAX)
}

/// Queues group message `seq` and flushes the sender's outbox until it is stored.
async fn send_group_message(
    sender: &Client,
    group_id: &str,
    tracker: &Tracker,
    seq: u64,
) -> Result<(), BenchError> {
    let body = tracker.body(seq, nanos_since(tracker.clock));
    sender
        .send_group_text(group_id.to_owned(), body)
        .await
        .map_err(client_err("send_group_text"))?;
    let mut last = String::new();
    for attempt in 0..FLUSH_ATTEMPTS {
        match sender.flush_outbox().await {
            Ok(0) => return Ok(()),
            Ok(waiting) => last = format!("{waiting} sends still queued"),
            Err(e) => {
                eprintln!("juntos-bench: flush_outbox (group message {seq}) failed: {e}");
                last = e.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(BenchError::Setup(format!(
        "group message {seq} was not sent after {FLUSH_ATTEMPTS} flushes: {last}"
    )))
}

/// The status of each message of the run in the sender's group history.
async fn sender_statuses(
    sender: &Client,
    group_id: &str,
    tracker: &Tracker,
) -> Result<Vec<Option<MessageStatus>>, BenchError> {
    let history: Vec<Message> = sender
        .group_history(group_id.to_owned(), history_limit(tracker.messages))
        .await
        .map_err(client_err("group_history"))?;
    let mut statuses = vec![None; tracker.messages as usize];
    for message in history.iter().filter(|m| m.outgoing) {
        if let Some((seq, _)) = tracker.parse(&message.body) {
            statuses[seq as usize] = Some(message.status);
        }
    }
    Ok(statuses)
}

/// One run of the `group` scenario on a fresh (or the given) system; its JSON report line.
async fn run_group(
    args: &Args,
    pods: Option<u32>,
    size: u32,
    label: &str,
    bin: Option<&Path>,
) -> Result<String, BenchError> {
    let messages = args.messages();
    let receiver_count = size as usize - 1;
    if let Some(limit) = open_files_limit()
        && limit < u64::from(size) * 8 + 256
    {
        eprintln!(
            "juntos-bench: {label}: the open-files limit ({limit}) may be too low for {size} \
             clients; raise it with `ulimit -n`"
        );
    }
    let target = Target::start(args, pods, label).await;
    let homes = tempfile::tempdir().map_err(|e| BenchError::Setup(format!("temp dir: {e}")))?;
    let outbox = Arc::new(Outbox::new(target.outbox()));

    // Sign in every member, a few at a time.
    eprintln!(
        "juntos-bench: {label}: signing in {size} clients via {}",
        target.url()
    );
    let signin_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.signin_tasks as usize));
    let mut sign_ins = tokio::task::JoinSet::new();
    for index in 0..size {
        let url = target.url().to_owned();
        let outbox = Arc::clone(&outbox);
        let gate = Arc::clone(&gate);
        let home = homes.path().join(format!("member-{index}"));
        sign_ins.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("never closed");
            (index, sign_in_member(&url, &home, &outbox, index).await)
        });
    }
    let mut members: Vec<Option<Arc<Client>>> = vec![None; size as usize];
    let mut reported = Instant::now();
    let mut signed_in = 0;
    while let Some(joined) = sign_ins.join_next().await {
        let (index, member) = joined?;
        members[index as usize] = Some(member?);
        signed_in += 1;
        if reported.elapsed() >= Duration::from_secs(5) {
            reported = Instant::now();
            eprintln!("juntos-bench: {label}: {signed_in}/{size} signed in");
        }
    }
    let signin_secs = signin_started.elapsed().as_secs_f64();
    let members: Vec<Arc<Client>> = members
        .into_iter()
        .map(|m| m.expect("every member signed in"))
        .collect();
    let (sender, receivers) = members.split_first().expect("a group has a sender");
    eprintln!("juntos-bench: {label}: {size} signed in in {signin_secs:.2} s");

    // The group: the sender and everyone else.
    let member_ids = receivers
        .iter()
        .map(|r| r.session().map(|s| s.user_id))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| BenchError::Setup("a member has no session".to_owned()))?;
    let creating = Instant::now();
    let group = sender
        .create_group("juntos-bench".to_owned(), member_ids)
        .await
        .map_err(client_err("create_group"))?;
    let create_group_secs = creating.elapsed().as_secs_f64();
    if group.members.len() != size as usize {
        return Err(BenchError::Setup(format!(
            "the group has {} members, not {size}",
            group.members.len()
        )));
    }
    let group_id = group.group_id;

    let tracker = Arc::new(Tracker::new(receiver_count, messages));
    let (stop, stopped) = watch::channel(false);
    let sync_errors = Arc::new(AtomicU64::new(0));
    if args.receive == Receive::Live {
        eprintln!("juntos-bench: {label}: starting {receiver_count} live receivers");
        let mut starts = tokio::task::JoinSet::new();
        for (index, receiver) in receivers.iter().enumerate() {
            let receiver = Arc::clone(receiver);
            let listener: Arc<dyn EventListener> = Arc::new(Listener {
                receiver: index,
                tracker: Arc::clone(&tracker),
            });
            let gate = Arc::clone(&gate);
            starts.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                receiver.start(Some(listener)).await
            });
        }
        while let Some(started) = starts.join_next().await {
            started?.map_err(client_err("Client::start"))?;
        }
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        while tracker.connected.load(Ordering::Relaxed) < receiver_count as u64 {
            if Instant::now() >= deadline {
                return Err(BenchError::Setup(format!(
                    "only {} of {receiver_count} receivers connected",
                    tracker.connected.load(Ordering::Relaxed)
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // The first message, which also hands out the sender key.
    let first_cpu_before = target.cpu();
    let first_ns = nanos_since(tracker.clock);
    let mut pollers = Vec::new();
    if args.receive == Receive::Poll {
        let tasks = (args.poll_tasks as usize).min(receiver_count);
        let mut shards: Vec<Vec<(usize, Arc<Client>)>> = vec![Vec::new(); tasks];
        for (index, receiver) in receivers.iter().enumerate() {
            shards[index % tasks].push((index, Arc::clone(receiver)));
        }
        for shard in shards {
            pollers.push(tokio::spawn(poll_receivers(
                shard,
                group_id.clone(),
                Arc::clone(&tracker),
                stopped.clone(),
                Arc::clone(&sync_errors),
            )));
        }
    }
    eprintln!("juntos-bench: {label}: first group message (hands out the sender key)");
    send_group_message(sender, &group_id, &tracker, 0).await?;
    let first_send_secs = (nanos_since(tracker.clock) - first_ns) as f64 / 1e9;
    if sender_statuses(sender, &group_id, &tracker).await?[0] == Some(MessageStatus::Failed) {
        return Err(BenchError::Setup(
            "the server refused the first group message".to_owned(),
        ));
    }
    eprintln!("juntos-bench: {label}: first group message stored in {first_send_secs:.2} s");
    let idle = Duration::from_secs(args.drain_timeout_secs);
    let receivers_total = receiver_count as u64;
    let first_everywhere = tracker
        .wait(label, "first message", idle, |t| {
            t.per_message[0].load(Ordering::Relaxed) >= receivers_total
        })
        .await;
    let first_delivered_secs = first_everywhere.then(|| {
        tracker.complete_ns[0]
            .load(Ordering::Relaxed)
            .saturating_sub(first_ns) as f64
            / 1e9
    });
    let first_cpu_after = target.cpu();

    // Messages 2…M, one after the other.
    let steady_cpu_before = target.cpu();
    let bench_cpu_before = cpu_seconds_of("/proc/self/stat");
    let steady_start_ns = nanos_since(tracker.clock);
    let mut send_ns = Vec::with_capacity(messages as usize);
    let mut reported = Instant::now();
    for seq in 1..messages {
        let sending = Instant::now();
        send_group_message(sender, &group_id, &tracker, seq).await?;
        send_ns.push(u64::try_from(sending.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if reported.elapsed() >= Duration::from_secs(1) {
            reported = Instant::now();
            eprintln!(
                "juntos-bench: {label}: {:.1} s: sent {}/{messages}, {} deliveries",
                tracker.clock.elapsed().as_secs_f64(),
                seq + 1,
                tracker.delivered.load(Ordering::Relaxed)
            );
        }
    }
    let expected = receivers_total * messages;
    tracker
        .wait(label, "all messages", idle, |t| {
            t.delivered.load(Ordering::Relaxed) >= expected
        })
        .await;
    let steady_cpu_after = target.cpu();
    let bench_cpu_after = cpu_seconds_of("/proc/self/stat");
    // A little longer, so late duplicates show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(true);
    let mut syncs = 0;
    for poller in pollers {
        syncs += poller.await?;
    }
    for receiver in receivers {
        receiver.stop();
    }
    let juntos_rss_mib = target.juntos_rss_mib();

    // What each history holds against what was counted.
    let statuses = sender_statuses(sender, &group_id, &tracker).await?;
    let stored = |s: &Option<MessageStatus>| {
        matches!(
            s,
            Some(MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Read)
        )
    };
    let acked: Vec<bool> = statuses.iter().map(stored).collect();
    let mut history_duplicates = 0u64;
    let mut history_mismatches = 0u64;
    let mut losses = 0u64;
    let limit = history_limit(messages);
    for (index, receiver) in receivers.iter().enumerate() {
        let history = receiver
            .group_history(group_id.clone(), limit)
            .await
            .map_err(client_err("group_history"))?;
        let mut copies = vec![0u64; messages as usize];
        for message in history.iter().filter(|m| !m.outgoing) {
            if let Some((seq, _)) = tracker.parse(&message.body) {
                copies[seq as usize] += 1;
            }
        }
        for seq in 0..messages {
            let held = copies[seq as usize];
            history_duplicates += held.saturating_sub(1);
            let counted = tracker.has(index, seq);
            history_mismatches += u64::from((held > 0) != counted);
            losses += u64::from(acked[seq as usize] && !counted);
        }
    }
    let loadavg = load_average();
    if let Target::Remote { .. } = target {
        for member in &members {
            let _ = member.sign_out().await;
        }
    }

    // The figures.
    let delivered = tracker.delivered.load(Ordering::Relaxed);
    let steady_deliveries = delivered - tracker.per_message[0].load(Ordering::Relaxed);
    let steady_messages = messages - 1;
    let last_ns = tracker.last_delivery_ns.load(Ordering::Relaxed);
    let steady_secs = (steady_messages > 0 && steady_deliveries > 0)
        .then(|| last_ns.saturating_sub(steady_start_ns) as f64 / 1e9);
    let per_sec = |count: u64| {
        steady_secs
            .filter(|s| *s > 0.0)
            .map(|s| round(count as f64 / s, 1))
    };
    let mut latencies = std::mem::take(
        &mut *tracker
            .latencies_ns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    latencies.sort_unstable();
    send_ns.sort_unstable();
    let ms = |sorted: &[u64], q: f64| quantile_ms(sorted, q).map(|v| round(v, 3));
    let per_1000 = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) if steady_deliveries > 0 => {
            Some(round((a - b) * 1000.0 / steady_deliveries as f64, 5))
        }
        _ => None,
    };
    let cpu_delta = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => Some(round(a - b, 3)),
        _ => None,
    };
    let line = GroupLine {
        scenario: "group",
        group_size: size,
        receivers: receiver_count,
        messages,
        receive: args.receive.name(),
        poll_tasks: (args.receive == Receive::Poll).then(|| {
            args.poll_tasks
                .min(u32::try_from(receiver_count).unwrap_or(u32::MAX))
        }),
        pods: target.pods(),
        backend: target.backend(),
        topology: target.topology(),
        server: target.server(),
        juntos_bin: bin.map(|b| b.display().to_string()),
        signin_secs: round(signin_secs, 3),
        signins_per_sec: round(f64::from(size) / signin_secs, 1),
        create_group_secs: round(create_group_secs, 3),
        first_send_secs: round(first_send_secs, 3),
        first_delivered_secs: first_delivered_secs.map(|v| round(v, 3)),
        first_server_cpu_secs: cpu_delta(first_cpu_before.juntos, first_cpu_after.juntos),
        first_backend_cpu_secs: cpu_delta(first_cpu_before.backend, first_cpu_after.backend),
        sent: messages,
        acked: acked.iter().filter(|a| **a).count() as u64,
        send_failures: statuses
            .iter()
            .filter(|s| **s == Some(MessageStatus::Failed))
            .count() as u64,
        deliveries_expected: expected,
        delivered,
        steady_messages,
        steady_deliveries,
        steady_secs: steady_secs.map(|v| round(v, 3)),
        group_messages_per_sec: per_sec(steady_messages),
        deliveries_per_sec: per_sec(steady_deliveries),
        send_p50_ms: ms(&send_ns, 0.5),
        send_max_ms: ms(&send_ns, 1.0),
        latency_p50_ms: ms(&latencies, 0.50),
        latency_p99_ms: ms(&latencies, 0.99),
        latency_max_ms: ms(&latencies, 1.0),
        losses,
        duplicates: tracker.duplicates.load(Ordering::Relaxed) + history_duplicates,
        history_mismatches,
        undecryptable: (args.receive == Receive::Live)
            .then(|| tracker.undecryptable.load(Ordering::Relaxed)),
        disconnects: (args.receive == Receive::Live)
            .then(|| tracker.disconnects.load(Ordering::Relaxed)),
        syncs: (args.receive == Receive::Poll).then_some(syncs),
        sync_errors: sync_errors.load(Ordering::Relaxed),
        server_cpu_secs_per_1000_deliveries: per_1000(
            steady_cpu_before.juntos,
            steady_cpu_after.juntos,
        ),
        backend_cpu_secs_per_1000_deliveries: per_1000(
            steady_cpu_before.backend,
            steady_cpu_after.backend,
        ),
        bench_cpu_secs_per_1000_deliveries: per_1000(bench_cpu_before, bench_cpu_after),
        juntos_rss_mib: juntos_rss_mib.map(|v| round(v, 1)),
        bench_peak_rss_mib: status_kib(std::process::id(), "VmHWM:").map(|v| round(v / 1024.0, 1)),
        loadavg,
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    };
    eprintln!(
        "juntos-bench: {label}: {delivered}/{expected} delivered, {losses} lost, {} msg/s, {} deliveries/s",
        line.group_messages_per_sec.unwrap_or(0.0),
        line.deliveries_per_sec.unwrap_or(0.0),
    );
    drop(members);
    drop(target);
    drop(homes);
    Ok(serde_json::to_string(&line).expect("a report serializes"))
}

/// The JSON line of one group run (field order as printed).
#[derive(serde::Serialize)]
struct GroupLine {
    scenario: &'static str,
    /// Members, sender included.
    group_size: u32,
    /// Members other than the sender (one device each).
    receivers: usize,
    /// Group messages sent (M).
    messages: u64,
    /// "poll" (`sync_now` from `poll_tasks` tasks) or "live" (`Client::start` each).
    receive: &'static str,
    poll_tasks: Option<u32>,
    /// Chat pods (1 for `juntos all`; null for `--server`).
    pods: Option<u32>,
    /// "sqlite" (`juntos all`), "redis+secantusdb" (`--pods`) or "unknown" (`--server`).
    backend: String,
    topology: String,
    server: String,
    juntos_bin: Option<String>,
    /// Signing in every member (codes, sign-in, prekeys).
    signin_secs: f64,
    signins_per_sec: f64,
    /// `Client::create_group` of every member.
    create_group_secs: f64,
    /// Message 1 queued to stored, sender-key hand-out to every member device included.
    first_send_secs: f64,
    /// Message 1 queued to its last receiver.
    first_delivered_secs: Option<f64>,
    /// Server CPU seconds from message 1 queued to its last delivery.
    first_server_cpu_secs: Option<f64>,
    first_backend_cpu_secs: Option<f64>,
    sent: u64,
    /// Messages the sender's history shows stored by the server.
    acked: u64,
    /// Messages the server refused for good.
    send_failures: u64,
    /// receivers × messages.
    deliveries_expected: u64,
    /// Distinct (receiver, message) deliveries.
    delivered: u64,
    /// Messages 2…M: the steady state.
    steady_messages: u64,
    steady_deliveries: u64,
    /// Message 2 queued to the last delivery.
    steady_secs: Option<f64>,
    group_messages_per_sec: Option<f64>,
    /// Deliveries (message × receiver) per second.
    deliveries_per_sec: Option<f64>,
    /// One group send, queued to stored (messages 2…M).
    send_p50_ms: Option<f64>,
    send_max_ms: Option<f64>,
    /// Queued at the sender to found at a receiver (messages 2…M).
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    /// (receiver, message) pairs of stored messages never delivered.
    losses: u64,
    /// A second `MessageReceived` for a message, or a message twice in a history.
    duplicates: u64,
    /// (receiver, message) pairs where the history and the count disagree.
    history_mismatches: u64,
    /// `Event::Undecryptable` (live only).
    undecryptable: Option<u64>,
    /// `Event::Disconnected` (live only).
    disconnects: Option<u64>,
    /// `sync_now` calls (poll only).
    syncs: Option<u64>,
    sync_errors: u64,
    /// CPU seconds per 1,000 steady deliveries, every `juntos` process.
    server_cpu_secs_per_1000_deliveries: Option<f64>,
    /// The same for redis-server and SecantusDB (`--pods`).
    backend_cpu_secs_per_1000_deliveries: Option<f64>,
    /// The same for this bench (every client's decryption and storage).
    bench_cpu_secs_per_1000_deliveries: Option<f64>,
    /// Resident memory of the `juntos` processes at the end.
    juntos_rss_mib: Option<f64>,
    /// Peak resident memory of this bench.
    bench_peak_rss_mib: Option<f64>,
    /// `/proc/loadavg` at the end: 1, 5 and 15 minutes.
    loadavg: Vec<f64>,
    cores: usize,
}
