//! Ports and readiness of the servers the harnesses start.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free loopback port")
        .port()
}

/// Starts `command` with no input and its output discarded, panicking with `missing(error)` (which
/// says how to install the server) when it cannot start.
pub(crate) fn spawn_quiet(
    command: &mut Command,
    missing: impl FnOnce(std::io::Error) -> String,
) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}", missing(e)))
}

/// Waits until something accepts connections on `port` of 127.0.0.1, panicking when `child`
/// (called `name` in the message) exits first or `timeout` passes.
pub(crate) fn wait_until_listening(child: &mut Child, name: &str, port: u16, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited before accepting connections: {status}");
        }
        assert!(
            start.elapsed() < timeout,
            "{name} not accepting connections on port {port} after {} s",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `<prefix>_<pid>_<n>_<nanos>`: a name no other test (in this process or another) uses.
pub(crate) fn unique_name(prefix: &str, separator: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{separator}{}{separator}{}{separator}{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
