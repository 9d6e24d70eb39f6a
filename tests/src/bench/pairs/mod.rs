//! Scenario `pairs`: P sender/receiver pairs of raw-gRPC devices; each sender sends M messages
//! with up to W `Chat.Send` calls in flight, really encrypted, and its receiver decrypts them
//! from a live `Chat.Connect` stream. [`run`] does one run and returns its JSON line.
//!
//! * [`device`]: signing in a bench device (code, keys, prekeys);
//! * [`send`]: a sender's windowed sends with retries;
//! * [`receive`]: a receiver's stream: decryption, acks, latency, duplicate and reorder counts;
//! * [`report`]: merging what every pair saw, and the JSON line.

mod device;
mod receive;
mod report;
mod send;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::raw::authed;
use juntos_client::crypto::{RemoteBundle, Session};
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::login::v1::directory_client::DirectoryClient;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{FetchBundlesRequest, SignOutRequest};
use rand::RngCore;
use rand::rngs::OsRng;
use tokio::sync::watch;

use self::device::{Device, sign_in_device};
use self::receive::Inbound;
use self::report::{Report, RunLine};
use self::send::Outbound;
use crate::bench::Args;
use crate::bench::error::{BenchError, crypto, rpc};
use crate::bench::procfs::{cpu_seconds_of, load_average};
use crate::bench::stats::round;
use crate::bench::system::Target;

/// The most pairs: the sign-in numbers are +1 201 555-0100 … 0199, two per pair.
pub(crate) const MAX_PAIRS: u32 = 50;

/// Counters every task updates, for progress and the end condition.
#[derive(Default)]
struct Progress {
    /// Sends answered, successfully or not.
    pub(super) answered: AtomicU64,
    /// Sends the server acknowledged.
    pub(super) acked: AtomicU64,
    /// Distinct messages delivered.
    pub(super) delivered: AtomicU64,
}

/// One run of the `pairs` scenario on a fresh (or the given) system; its JSON report line.
pub(crate) async fn run(
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
