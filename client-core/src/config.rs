//! [`ClientConfig`]: what an app tells [`Client::with_config`](crate::Client::with_config).

/// How to make a [`Client`](crate::Client).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ClientConfig {
    /// The gateway: `https://host[:port]`, or `http://host:port` for a server on this machine
    /// only (`localhost`, 127.0.0.0/8, `::1`).
    pub server_url: String,
    /// Where this device's database lives (created if missing, private to the user).
    pub home_dir: String,
    /// PEM certificates to trust for `https://` besides the web PKI roots: a self-hosted
    /// server's private CA, or its self-signed certificate (pinning it). `None` trusts the web
    /// PKI roots alone.
    #[uniffi(default = None)]
    pub extra_ca_pem: Option<String>,
}
