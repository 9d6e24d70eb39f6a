//! A pool of upstream endpoints for one role, reached over HTTP/2 with mutual TLS (the
//! gateway's internal certificate; the peer must present its role's), chosen round-robin among
//! the healthy ones.
//!
//! Endpoints come from fixed URIs and from DNS names re-resolved every discovery interval (an
//! address that disappears leaves the pool). Each endpoint has its own health checker
//! ([`super::health`]); when no endpoint is healthy, calls try them all anyway, since a failed
//! probe is weaker evidence than a failed call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use juntos_store::Tasks;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::ClientTlsConfig;

use super::BoxError;
use super::endpoints::Source;
use super::health;
use crate::tls::Role;
use crate::tls::internal::{InternalTls, TimedConnector};

/// The request body the gateway forwards.
pub type ForwardBody = UnsyncBoxBody<Bytes, BoxError>;

/// How often endpoints are probed and names re-resolved.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Between health probes of one endpoint.
    pub health_interval: Duration,
    /// How long one probe may take.
    pub health_timeout: Duration,
    /// Between DNS resolutions of `dns:///` sources.
    pub discovery_interval: Duration,
}

/// One endpoint and its health checker (aborted when the endpoint leaves the pool).
pub struct Member {
    uri: Uri,
    healthy: watch::Sender<bool>,
    checker: JoinHandle<()>,
}

impl Member {
    fn new(role: Role, tls: ClientTlsConfig, uri: Uri, settings: PoolSettings) -> Self {
        let (healthy, _) = watch::channel(false);
        let checker = tokio::spawn(health::watch_endpoint(
            role.name(),
            tls,
            uri.clone(),
            healthy.clone(),
            settings.health_interval,
            settings.health_timeout,
        ));
        Self {
            uri,
            healthy,
            checker,
        }
    }

    /// `https://host:port` of the endpoint.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    fn is_healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    /// Follows the endpoint's health from now on (for ending streams when it goes down).
    pub fn health(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.checker.abort();
    }
}

/// Endpoints of one upstream role.
pub struct Pool {
    role: Role,
    /// How health probes reach the endpoints.
    tls: ClientTlsConfig,
    settings: PoolSettings,
    sources: Vec<Source>,
    members: RwLock<Vec<Arc<Member>>>,
    next: AtomicUsize,
    client: Client<TimedConnector, ForwardBody>,
}

impl Pool {
    /// A pool over `sources`; its fixed endpoints are members at once, its DNS names after the
    /// first resolution (run by [`Pool::start_discovery`]).
    pub fn new(
        role: Role,
        sources: Vec<Source>,
        settings: PoolSettings,
        tls: &InternalTls,
    ) -> Arc<Self> {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(tls.connector(role));
        let pool = Arc::new(Self {
            role,
            tls: tls.client_config(role),
            settings,
            sources,
            members: RwLock::default(),
            next: AtomicUsize::new(0),
            client,
        });
        pool.set_members(pool.static_uris());
        pool
    }

    fn static_uris(&self) -> Vec<Uri> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                Source::Static(uri) => Some(uri.clone()),
                Source::Dns { .. } => None,
            })
            .collect()
    }

    /// Resolves the DNS sources now, then every discovery interval in the returned task.
    pub async fn start_discovery(self: &Arc<Self>) -> Tasks {
        let mut tasks = Tasks::default();
        if !self.sources.iter().any(|s| matches!(s, Source::Dns { .. })) {
            return tasks;
        }
        let mut known = HashMap::new();
        self.discover(&mut known).await;
        let this = Arc::clone(self);
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(this.settings.discovery_interval).await;
                this.discover(&mut known).await;
            }
        });
        tasks
    }

    /// One round of resolution; a name that fails to resolve keeps its last known addresses.
    async fn discover(&self, known: &mut HashMap<(String, u16), Vec<Uri>>) {
        let mut uris = self.static_uris();
        for source in &self.sources {
            let Source::Dns { host, port } = source else {
                continue;
            };
            let key = (host.clone(), *port);
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addrs) => {
                    let mut resolved: Vec<Uri> = addrs
                        .filter_map(|addr| format!("https://{addr}").parse().ok())
                        .collect();
                    resolved.sort_by_key(ToString::to_string);
                    resolved.dedup();
                    known.insert(key.clone(), resolved);
                }
                Err(e) => {
                    tracing::warn!(role = self.role.name(), name = %host, error = %e,
                        "DNS resolution failed; keeping the last known endpoints");
                }
            }
            uris.extend(known.get(&key).into_iter().flatten().cloned());
        }
        self.set_members(uris);
    }

    /// Makes `uris` the members: existing ones keep their health, new ones start their
    /// checker, missing ones leave (and their checker stops).
    fn set_members(&self, mut uris: Vec<Uri>) {
        uris.dedup();
        let mut members = self.members.write().expect("pool lock");
        let mut kept: Vec<Arc<Member>> = Vec::with_capacity(uris.len());
        for uri in uris {
            if kept.iter().any(|m| m.uri == uri) {
                continue;
            }
            match members.iter().find(|m| m.uri == uri) {
                Some(member) => kept.push(Arc::clone(member)),
                None => {
                    tracing::info!(role = self.role.name(), endpoint = %uri, "upstream endpoint added");
                    kept.push(Arc::new(Member::new(
                        self.role,
                        self.tls.clone(),
                        uri,
                        self.settings,
                    )));
                }
            }
        }
        for gone in members
            .iter()
            .filter(|m| !kept.iter().any(|k| k.uri == m.uri))
        {
            tracing::info!(role = self.role.name(), endpoint = %gone.uri, "upstream endpoint removed");
        }
        *members = kept;
    }

    /// The next healthy endpoint in turn other than `avoid`; when none is healthy, the next of
    /// all the others; `None` when there is no other endpoint at all.
    pub fn pick(&self, avoid: Option<&Uri>) -> Option<Arc<Member>> {
        let members = self.members.read().expect("pool lock");
        let others: Vec<&Arc<Member>> = members.iter().filter(|m| Some(&m.uri) != avoid).collect();
        let healthy: Vec<&Arc<Member>> =
            others.iter().copied().filter(|m| m.is_healthy()).collect();
        let candidates = if healthy.is_empty() { others } else { healthy };
        if candidates.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
        Some(Arc::clone(candidates[i]))
    }

    /// The HTTP/2 client shared by the pool's endpoints.
    pub fn client(&self) -> &Client<TimedConnector, ForwardBody> {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PoolSettings {
        PoolSettings {
            health_interval: Duration::from_secs(3600),
            health_timeout: Duration::from_millis(10),
            discovery_interval: Duration::from_secs(3600),
        }
    }

    fn pool(sources: Vec<Source>) -> Arc<Pool> {
        let tls = InternalTls::ephemeral()
            .expect("certs")
            .into_iter()
            .find(|(role, _)| *role == Role::Gateway)
            .expect("gateway")
            .1;
        Pool::new(Role::Chat, sources, settings(), &tls)
    }

    fn picks(pool: &Pool, avoid: Option<&Uri>) -> Vec<String> {
        (0..4)
            .map(|_| pool.pick(avoid).expect("a member").uri().to_string())
            .collect()
    }

    #[tokio::test]
    async fn picks_rotate_over_healthy_endpoints_or_all_when_none_is() {
        let sources =
            super::super::endpoints::parse_endpoints("https://a:1, https://b:2, https://c:3")
                .expect("valid");
        let pool = pool(sources);
        // Nothing probed healthy yet: every endpoint is tried.
        let mut all = picks(&pool, None);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 3);
        // Only healthy ones once some are.
        for m in pool.members.read().expect("lock").iter() {
            m.healthy.send_replace(m.uri.port_u16() != Some(2));
        }
        let mut healthy = picks(&pool, None);
        healthy.sort();
        healthy.dedup();
        assert_eq!(healthy, ["https://a:1/", "https://c:3/"]);
        // A retry avoids the first choice.
        let avoid: Uri = "https://a:1".parse().expect("uri");
        assert!(
            picks(&pool, Some(&avoid))
                .iter()
                .all(|u| u == "https://c:3/")
        );
    }

    #[tokio::test]
    async fn members_keep_their_health_across_updates_and_leave_when_gone() {
        let pool = pool(Vec::new());
        let a: Uri = "https://10.0.0.1:1".parse().expect("uri");
        let b: Uri = "https://10.0.0.2:1".parse().expect("uri");
        pool.set_members(vec![a.clone(), b.clone()]);
        let first = pool.pick(Some(&b)).expect("a");
        first.healthy.send_replace(true);
        pool.set_members(vec![b.clone(), a.clone()]);
        assert!(
            pool.pick(Some(&b)).expect("a").is_healthy(),
            "same member kept"
        );
        pool.set_members(vec![b.clone()]);
        assert!(pool.pick(Some(&b)).is_none(), "a left the pool");
    }

    #[tokio::test]
    async fn dns_names_resolve_into_endpoints() {
        let sources =
            super::super::endpoints::parse_endpoints("dns:///localhost:4321").expect("valid");
        let pool = pool(sources);
        assert!(pool.pick(None).is_none(), "nothing before resolution");
        let _tasks = pool.start_discovery().await;
        let uri = pool.pick(None).expect("resolved").uri().to_string();
        assert!(
            uri == "https://127.0.0.1:4321/" || uri == "https://[::1]:4321/",
            "{uri}"
        );
    }
}
