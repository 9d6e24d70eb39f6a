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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use juntos_client::crypto::{
    CryptoError, IdentityKeyPair, InMemoryPrekeys, OneTimePrekeyPair, RemoteBundle, Session,
    SignedPrekeyPair,
};
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
use juntos_tests::System;
use juntos_tests::raw::authed;
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

/// Load generator for Juntos messaging (scenario `pairs`).
///
/// P sender/receiver pairs of signed-in devices; each sender sends M messages to its receiver
/// with up to W sends in flight, really encrypted and really decrypted, through the gateway.
/// Prints one JSON object per run on stdout: delivered messages per second (first send to last
/// delivery), send-to-deliver latency p50/p99/p999 in ms, losses (acknowledged sends never
/// delivered), duplicates, reordered deliveries, the server's CPU seconds per 1,000 messages and
/// the machine's load average at the end.
///
/// By default every run starts its own `juntos all` (fresh data directory, every rate limit
/// raised, console SMS). The binary is `$JUNTOS_BIN` when set; otherwise the bench runs
/// `cargo build --release -p juntos-server --bin juntos` and uses the release binary it built.
///
/// With `--server URL` the bench uses a running system instead and reads sign-in codes from
/// `--data-dir DIR` (the server's `DIR/sms-outbox.jsonl`, so it must use `--sms console`).
/// Such a server needs its limits raised like the spawned one: `--ip-rate`, `--ip-burst`,
/// `--user-rate`, `--user-burst`, `--chat-send-rate`, `--chat-send-burst` and
/// `--otp-ip-limit-per-hour` of 1000000, and (to run more than once) a short
/// `--otp-resend-schedule-secs` and a high `--otp-max-codes-per-day`. Devices are signed out
/// at the end of each run. Give `--server-pid` to measure the server's CPU time.
#[derive(Debug, Parser)]
#[command(name = "juntos-bench", verbatim_doc_comment)]
struct Args {
    /// Sender/receiver pairs, 1–50. Repeat the flag to run several sizes in one go
    /// (`--pairs 1 --pairs 10 --pairs 50`), each on a fresh system (without `--server`).
    #[arg(long, default_values_t = [10u32], value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAIRS)))]
    pairs: Vec<u32>,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Sends each sender keeps in flight.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    window: u32,
    /// Plaintext bytes per message (at least 16: sequence number and send time).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=60_000))]
    payload_bytes: u32,
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
    /// Seconds to wait for deliveries after the last send was answered.
    #[arg(long, default_value_t = 10)]
    drain_timeout_secs: u64,
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
        for &pairs in &args.pairs {
            match run(&args, pairs, bin.as_deref()).await {
                Ok(report) => println!("{report}"),
                Err(e) => {
                    eprintln!("juntos-bench: pairs={pairs}: {e}");
                    return ExitCode::FAILURE;
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
    /// `juntos all` started for this run.
    Spawned(Box<System>),
    /// A running system.
    Remote {
        url: String,
        data_dir: PathBuf,
        pid: Option<u32>,
    },
}

impl Target {
    fn url(&self) -> &str {
        match self {
            Self::Spawned(sys) => &sys.gateway_url,
            Self::Remote { url, .. } => url,
        }
    }

    fn outbox(&self) -> PathBuf {
        match self {
            Self::Spawned(sys) => sys.data_dir().join("sms-outbox.jsonl"),
            Self::Remote { data_dir, .. } => data_dir.join("sms-outbox.jsonl"),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Self::Spawned(sys) => Some(sys.pid()),
            Self::Remote { pid, .. } => *pid,
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
async fn run(args: &Args, pairs: u32, bin: Option<&Path>) -> Result<String, BenchError> {
    let target = match &args.server {
        Some(url) => Target::Remote {
            url: url.clone(),
            data_dir: args.data_dir.clone().expect("clap requires --data-dir"),
            pid: args.server_pid,
        },
        None => {
            eprintln!("juntos-bench: pairs={pairs}: starting juntos all");
            let mut builder = System::builder();
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
            Target::Spawned(Box::new(builder.start().await))
        }
    };

    let setup_started = Instant::now();
    eprintln!(
        "juntos-bench: pairs={pairs}: signing in {} devices via {}",
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
    eprintln!("juntos-bench: pairs={pairs}: setup took {setup_secs:.2} s");

    // The data phase: receivers connect first, then every sender starts.
    let messages = args.messages;
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
    let server_cpu_before = target.pid().and_then(cpu_seconds);
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
                "juntos-bench: pairs={pairs}: {:.1} s: sent {acked}/{total}, delivered {delivered}",
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
    let server_cpu_after = target.pid().and_then(cpu_seconds);
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
        server: args
            .server
            .clone()
            .unwrap_or_else(|| "spawned juntos all".to_owned()),
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
        server_cpu_secs_per_1000: cpu_per_1000(server_cpu_before, server_cpu_after)
            .map(|v| round(v, 5)),
        bench_cpu_secs_per_1000: cpu_per_1000(bench_cpu_before, bench_cpu_after)
            .map(|v| round(v, 5)),
        loadavg,
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    };
    eprintln!(
        "juntos-bench: pairs={pairs}: {} delivered in {:.2} s ({:.0}/s), {} lost",
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
    /// The gateway URL, or "spawned juntos all".
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
    /// Server user+system CPU seconds per 1,000 delivered messages, over the data phase.
    server_cpu_secs_per_1000: Option<f64>,
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
        let n = self.latencies_ns.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Some(self.latencies_ns[rank - 1] as f64 / 1e6)
    }
}

/// User plus system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds from a `/proc/<pid>/stat` file.
fn cpu_seconds_of(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
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
