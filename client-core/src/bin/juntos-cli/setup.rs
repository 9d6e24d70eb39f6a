//! Opening the [`Client`] from the global options: the server, its extra CA, the home
//! directory and (tests only) the offset clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use juntos_client::{Client, ClientConfig, ClientError};
use juntos_clock::{OffsetFileClock, SharedClock, SystemClock};

/// The client for `server`, keeping its keys and session in `home` (or [`default_home`]).
pub(crate) fn open_client(
    server: String,
    ca_file: Option<&Path>,
    home: Option<PathBuf>,
    test_clock_file: Option<&Path>,
) -> Result<Arc<Client>, ClientError> {
    let clock: SharedClock = match test_clock_file {
        Some(path) => Arc::new(OffsetFileClock::new(path)),
        None => Arc::new(SystemClock),
    };
    let home = home.unwrap_or_else(default_home);
    let extra_ca_pem = match ca_file {
        Some(path) => Some(read_ca_file(path)?),
        None => None,
    };
    let home_dir = home
        .into_os_string()
        .into_string()
        .map_err(|_| ClientError::InvalidInput {
            message: "the home directory must be a UTF-8 path".to_owned(),
        })?;
    let config = ClientConfig {
        server_url: server,
        home_dir,
        extra_ca_pem,
    };
    Client::with_config_and_clock(config, clock)
}

/// The PEM in `--ca-file` (checked by the client, which says what is wrong with it).
fn read_ca_file(path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|e| ClientError::InvalidInput {
        message: format!("cannot read the CA file {}: {e}", path.display()),
    })
}

/// `~/.juntos-cli`, or `./.juntos-cli` without a home directory.
fn default_home() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".juntos-cli"),
        None => PathBuf::from(".juntos-cli"),
    }
}
