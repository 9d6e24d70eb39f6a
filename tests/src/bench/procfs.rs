//! What the bench reads from `/proc`: CPU seconds of a process and of every process it started
//! (the spawned system), resident memory, the open-files limit and the load average.

use std::process::Command;

/// User plus system CPU seconds of process `pid` so far.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds from a `/proc/<pid>/stat` file.
pub(crate) fn cpu_seconds_of(path: &str) -> Option<f64> {
    Some(read_stat(path)?.cpu_secs)
}

/// What the bench reads of a `/proc/<pid>/stat` file.
pub(crate) struct ProcStat {
    pub(crate) pid: u32,
    pub(crate) comm: String,
    pub(crate) ppid: u32,
    /// User plus system CPU seconds.
    pub(crate) cpu_secs: f64,
}

pub(crate) fn read_stat(path: &str) -> Option<ProcStat> {
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
pub(crate) fn descendants() -> Vec<ProcStat> {
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
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The soft limit on open files of this process.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `getconf CLK_TCK` (100 on every common Linux).
pub(crate) fn clock_ticks_per_second() -> f64 {
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
pub(crate) fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
