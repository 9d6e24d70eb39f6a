//! The system under test: the `juntos` binary a spawned system runs, and [`Target`], the system
//! a run talks to (`juntos all`, separate roles on Redis and SecantusDB, or a running system
//! behind `--server`), with what the reports say about it and its CPU and memory use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{MongoTestServer, System};

use crate::bench::Args;
use crate::bench::error::BenchError;
use crate::bench::procfs::{cpu_seconds, descendants, status_kib};

/// A limit high enough never to bite during a run.
pub(crate) const UNLIMITED: &str = "1000000";
/// The most chat pods `--pods` starts.
pub(crate) const MAX_PODS: u32 = 16;

/// The `juntos` binary for spawned systems: `$JUNTOS_BIN`, or a fresh release build, which it
/// hands to the harness ([`crate::use_juntos_bin`]).
pub(crate) fn juntos_binary() -> Result<PathBuf, BenchError> {
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
    crate::use_juntos_bin(bin.clone());
    Ok(bin)
}

/// The system a run talks to.
pub(crate) enum Target {
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
pub(crate) struct SystemCpu {
    /// Every `juntos` process (or `--server-pid`).
    pub(crate) juntos: Option<f64>,
    /// redis-server and SecantusDB, when the run started them.
    pub(crate) backend: Option<f64>,
}

impl Target {
    /// The run's system: `--server`, or a fresh one with every limit raised.
    pub(crate) async fn start(args: &Args, pods: Option<u32>, label: &str) -> Self {
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

    pub(crate) fn url(&self) -> &str {
        match self {
            Self::Spawned { sys, .. } => &sys.gateway_url,
            Self::Remote { url, .. } => url,
        }
    }

    pub(crate) fn outbox(&self) -> PathBuf {
        match self {
            Self::Spawned { sys, .. } => sys.data_dir().join("sms-outbox.jsonl"),
            Self::Remote { data_dir, .. } => data_dir.join("sms-outbox.jsonl"),
        }
    }

    /// The `server` field of a report.
    pub(crate) fn server(&self) -> String {
        match self {
            Self::Spawned { pods: None, .. } => "spawned juntos all".to_owned(),
            Self::Spawned { pods: Some(_), .. } => "spawned split roles".to_owned(),
            Self::Remote { url, .. } => url.clone(),
        }
    }

    /// Chat pods (None for a running system).
    pub(crate) fn pods(&self) -> Option<u32> {
        match self {
            Self::Spawned { pods, .. } => Some(pods.unwrap_or(1)),
            Self::Remote { .. } => None,
        }
    }

    /// Where login and chat keep their data, and what routes between pods.
    pub(crate) fn backend(&self) -> String {
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
    pub(crate) fn topology(&self) -> String {
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
    pub(crate) fn cpu(&self) -> SystemCpu {
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
    pub(crate) fn juntos_rss_mib(&self) -> Option<f64> {
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
