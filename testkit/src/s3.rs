//! An S3-compatible test server: `s3s-fs` 0.14.1 (`cargo install s3s-fs@0.14.1 --features binary
//! --locked`) on a free loopback port over a temporary data folder, with one bucket, killed (and
//! its folder removed) on drop. It checks SigV4 signatures, so the keys below must be the ones
//! a client signs with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::net::{free_port, spawn_quiet, unique_name, wait_until_listening};

/// The access key id the server accepts.
pub const ACCESS_KEY: &str = "juntos-test-access";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "juntos-test-secret-key";
/// The bucket that exists when [`S3TestServer::start`] returns.
pub const BUCKET: &str = "juntos-media";

/// A running `s3s-fs`.
pub struct S3TestServer {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3TestServer {
    /// Starts the server and waits until it accepts connections. Panics with install
    /// instructions when `s3s-fs` cannot be found: tests never skip silently.
    pub fn start() -> Self {
        let binary = std::env::var_os("JUNTOS_S3S_FS")
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from("s3s-fs"), PathBuf::from);
        let root = std::env::temp_dir().join(unique_name("juntos-s3s", "-"));
        // s3s-fs keeps a bucket as a folder of its root: creating the folder creates the bucket.
        std::fs::create_dir_all(root.join(BUCKET)).expect("create the s3s-fs data folder");
        let port = free_port();
        let child = spawn_quiet(
            Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root),
            |e| {
                let _ = std::fs::remove_dir_all(&root);
                format!(
                    "cannot start {} ({e}): install it with `cargo install s3s-fs@0.14.1 \
                     --features binary --locked` (scripts/test.sh does), or set JUNTOS_S3S_FS",
                    binary.display()
                )
            },
        );
        // Dropping the server kills the process and removes the folder, also when waiting panics.
        let mut server = Self { child, port, root };
        wait_until_listening(&mut server.child, "s3s-fs", port, Duration::from_secs(30));
        server
    }

    /// The endpoint URL, for path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder the server keeps its objects in (`<root>/<bucket>/<key>`), for tests that
    /// check what is stored.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
