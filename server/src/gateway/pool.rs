//! A pool of upstream endpoints for one role, reached over HTTP/2 (h2c) and chosen round-robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::FrameLimit;

/// The request body the gateway forwards.
pub type ForwardBody = FrameLimit<Incoming>;

/// Endpoints of one upstream role.
pub struct Pool {
    endpoints: Vec<Uri>,
    next: AtomicUsize,
    client: Client<HttpConnector, ForwardBody>,
}

impl Pool {
    /// A pool over `endpoints` (`http://host:port`, at least one).
    pub fn new(endpoints: Vec<Uri>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self {
            endpoints,
            next: AtomicUsize::new(0),
            client,
        }
    }

    /// The next endpoint in turn.
    pub fn pick(&self) -> &Uri {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
    }

    /// The HTTP/2 client shared by the pool's endpoints.
    pub fn client(&self) -> &Client<HttpConnector, ForwardBody> {
        &self.client
    }
}

/// Parses a comma-separated endpoint list (`http://host:port,...`).
pub fn parse_endpoints(list: &str) -> Result<Vec<Uri>, String> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let uri: Uri = s.parse().map_err(|e| format!("bad endpoint {s:?}: {e}"))?;
            match (uri.scheme_str(), uri.authority()) {
                (Some("http"), Some(_)) => Ok(uri),
                _ => Err(format!("bad endpoint {s:?}: expected http://host:port")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err("no endpoints given".to_owned());
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists_parse_and_rotate() {
        let pool = Pool::new(parse_endpoints("http://a:1, http://b:2").expect("valid"));
        let picks: Vec<String> = (0..4).map(|_| pool.pick().to_string()).collect();
        assert_eq!(
            picks,
            ["http://a:1/", "http://b:2/", "http://a:1/", "http://b:2/"]
        );
        assert!(parse_endpoints("").is_err());
        assert!(parse_endpoints("a:1").is_err());
        assert!(parse_endpoints("https://a:1").is_err());
    }
}
