//! A real `redis-server` on a free loopback port with no persistence, killed on drop. A test can
//! kill it (an outage: everything it held is gone) and start it again, empty, on the same port.

use std::process::{Child, Command};
use std::time::Duration;

use crate::net::{free_port, spawn_quiet, wait_until_listening};

/// A `redis-server` this test started.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it accepts connections. Panics with
    /// install instructions when the binary is missing: tests never skip silently.
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir for redis-server"),
        };
        server.restart();
        server
    }

    /// Kills the server with SIGKILL (an outage; everything it held is gone). Does nothing when
    /// it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, empty, on the same port after [`RedisServer::kill`], and waits
    /// until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running already");
        let child = spawn_quiet(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path()),
            |e| {
                format!(
                    "cannot start redis-server ({e}): install it with \
                     `apt-get install redis-server` (scripts/test.sh does this)"
                )
            },
        );
        let child = self.child.insert(child);
        wait_until_listening(child, "redis-server", self.port, Duration::from_secs(10));
    }

    /// Its port on 127.0.0.1 (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
