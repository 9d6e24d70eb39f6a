//! A MongoDB-wire-protocol test server: SecantusDB (`secantusd-py`, PyPI `SecantusDB==0.7.0b3`)
//! in memory on a free loopback port, killed on drop. No `mongod` can be installed on these
//! machines; set `JUNTOS_TEST_MONGODB_URI` to run against a real MongoDB instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::net::{free_port, spawn_quiet, unique_name, wait_until_listening};

/// Where the server comes from when the tests use one.
pub enum MongoTestServer {
    /// A SecantusDB process this test started.
    Secantus {
        /// The process.
        child: Child,
        /// Its port on 127.0.0.1.
        port: u16,
    },
    /// `JUNTOS_TEST_MONGODB_URI`: a server someone else runs.
    External(String),
}

impl MongoTestServer {
    /// The server at `JUNTOS_TEST_MONGODB_URI` when set, else a fresh SecantusDB. Panics with
    /// install instructions when `secantusd-py` cannot be found: tests never skip silently.
    pub fn start() -> Self {
        if let Ok(uri) = std::env::var("JUNTOS_TEST_MONGODB_URI")
            && !uri.is_empty()
        {
            return Self::External(uri);
        }
        let binary = secantusd_binary();
        let port = free_port();
        let child = spawn_quiet(
            Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--storage-path", ":memory:"]),
            |e| {
                format!(
                    "cannot start {} ({e}): run scripts/test.sh, which installs SecantusDB into \
                     .venv (or set JUNTOS_SECANTUSD, or JUNTOS_TEST_MONGODB_URI for a real MongoDB)",
                    binary.display()
                )
            },
        );
        // Dropping the server kills the process, also when waiting panics.
        let mut server = Self::Secantus { child, port };
        if let Self::Secantus { child, .. } = &mut server {
            wait_until_listening(child, "secantusd-py", port, Duration::from_secs(30));
        }
        server
    }

    /// A connection string to the server.
    pub fn uri(&self) -> String {
        match self {
            Self::Secantus { port, .. } => {
                format!("mongodb://127.0.0.1:{port}/?directConnection=true")
            }
            Self::External(uri) => uri.clone(),
        }
    }

    /// `uri()` with `database` as the default database (a fresh, unique name per test keeps
    /// tests apart on a shared external server).
    pub fn uri_with_database(&self, database: &str) -> String {
        with_database(&self.uri(), database)
    }
}

impl Drop for MongoTestServer {
    fn drop(&mut self) {
        if let Self::Secantus { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A database name no other test uses: `<prefix>_<pid>_<n>_<nanos>`.
pub fn unique_database(prefix: &str) -> String {
    unique_name(prefix, "_")
}

/// `uri` with its path (the default database) set to `database`.
fn with_database(uri: &str, database: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("mongodb", uri));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let hosts = before_query.split('/').next().unwrap_or(before_query);
    match query {
        Some(q) => format!("{scheme}://{hosts}/{database}?{q}"),
        None => format!("{scheme}://{hosts}/{database}"),
    }
}

/// `$JUNTOS_SECANTUSD`, else `<repo>/.venv/bin/secantusd-py`, else `secantusd-py` on PATH.
fn secantusd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("JUNTOS_SECANTUSD").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    // This crate, like every crate of the workspace, sits one level below the repository root.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = repo.join(".venv/bin/secantusd-py");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("secantusd-py")
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_goes_into_the_path() {
        assert_eq!(
            super::with_database("mongodb://127.0.0.1:1/?directConnection=true", "t1"),
            "mongodb://127.0.0.1:1/t1?directConnection=true"
        );
        assert_eq!(
            super::with_database("mongodb://u:p@h1,h2/admin?replicaSet=rs", "t2"),
            "mongodb://u:p@h1,h2/t2?replicaSet=rs"
        );
        assert_eq!(super::with_database("mongodb://h", "t3"), "mongodb://h/t3");
    }

    #[test]
    fn database_names_are_unique() {
        let (a, b) = (super::unique_database("t"), super::unique_database("t"));
        assert!(a.starts_with(&format!("t_{}_", std::process::id())), "{a}");
        assert_ne!(a, b);
    }
}
