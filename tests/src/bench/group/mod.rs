//! Scenario `group`: one sender and N-1 receivers, each a client-core `Client` with its own
//! home, in one group; the sender sends M group messages one at a time and the receivers poll
//! or keep live connections until each has every message. [`run`] does one run and returns
//! its JSON line.
//!
//! * [`member`]: signing in a member;
//! * [`tracker`]: what the receivers got (deliveries, latency, duplicates);
//! * [`receive`]: live listeners and polling tasks;
//! * [`send`]: sending one group message, and the sender's view of what was stored;
//! * [`report`]: the JSON line.

mod member;
mod receive;
mod report;
mod send;
mod tracker;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use juntos_client::{Client, EventListener, MessageStatus};
use tokio::sync::{Semaphore, watch};

use self::member::sign_in_member;
use self::receive::{Listener, poll_receivers};
use self::report::GroupLine;
use self::send::{send_group_message, sender_statuses};
use self::tracker::Tracker;
use crate::bench::clock::nanos_since;
use crate::bench::error::{BenchError, client_err};
use crate::bench::outbox::Outbox;
use crate::bench::procfs::{cpu_seconds_of, load_average, open_files_limit, status_kib};
use crate::bench::stats::{quantile_ms, round};
use crate::bench::system::Target;
use crate::bench::{Args, Receive};

/// The most members of a group (the chat service's cap).
pub(crate) const MAX_GROUP_SIZE: u32 = 1024;

/// How long live receivers may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// A `group_history` limit that covers every message of the run.
fn history_limit(messages: u64) -> u32 {
    u32::try_from(messages + 10).unwrap_or(u32::MAX)
}

/// One run of the `group` scenario on a fresh (or the given) system; its JSON report line.
pub(crate) async fn run(
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
        .groups()
        .create("juntos-bench".to_owned(), member_ids)
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
            .groups()
            .history(group_id.clone(), limit)
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
    let mut latencies = std::mem::take(&mut *juntos_store::lock(&tracker.latencies_ns));
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
