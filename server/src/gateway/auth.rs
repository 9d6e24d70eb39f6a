//! Access-token checks at the gateway.
//!
//! The gateway holds only public keys: it fetches them from login-service
//! (`LoginInternal.GetVerificationKeys`) at start, every minute, and soon after it meets a token
//! signed by a key it does not know, so key rotation needs no shared files. Revoked sessions come
//! from `LoginInternal.ListRevocations`, polled every 250 ms, so a sign-out takes effect within a
//! second. If login-service is unreachable the gateway keeps its last keys and revocation set;
//! access tokens live 15 minutes, which bounds what an outage can let through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderMap;
use juntos_clock::SharedClock;
use juntos_proto::error::{reason, status};
use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
use juntos_proto::login::v1::{GetVerificationKeysRequest, ListRevocationsRequest};
use juntos_store::Tasks;
use juntos_token::{AccessClaims, TokenError, TokenVerifier};
use tokio::sync::{Notify, watch};
use tonic::Code;
use tonic::transport::Channel;

/// How often the verification keys are fetched when nothing asks sooner.
const KEY_REFRESH: Duration = Duration::from_secs(60);
/// The shortest gap between two key fetches triggered by unknown key ids.
const KEY_REFRESH_MIN_GAP: Duration = Duration::from_secs(2);
/// How often revocations are polled.
const REVOCATION_POLL: Duration = Duration::from_millis(250);
/// Most verified tokens remembered at once.
const VERIFIED_CACHE_MAX: usize = 100_000;
/// Overlap between revocation polls, covering clock skew between login pods.
const REVOCATION_OVERLAP_MS: i64 = 5_000;

/// Verifies access tokens and tracks revoked sessions.
pub struct Auth {
    verifier: RwLock<Arc<TokenVerifier>>,
    /// Revoked session id → when the entry may be forgotten (Unix ms).
    revoked: RwLock<HashMap<String, i64>>,
    clock: SharedClock,
    login: LoginInternalClient<Channel>,
    key_refresh_wanted: Notify,
    /// `since_ms` for the next revocation poll.
    revocations_since: AtomicI64,
    /// Set once the first revocation poll has succeeded.
    revocations_loaded: AtomicBool,
    /// Tokens whose signature already verified, with their claims.
    verified: Mutex<HashMap<String, AccessClaims>>,
    /// Bumped whenever sessions are newly revoked, so open streams look again.
    revocation_generation: watch::Sender<u64>,
    /// Session id → the latest expiry of any access token of it seen here: a stream opened
    /// with an older token lives on while its device keeps refreshing.
    session_expiry: Mutex<HashMap<String, i64>>,
}

/// The answer to a call of a signed-out or revoked session.
fn revoked() -> tonic::Status {
    status(
        Code::Unauthenticated,
        reason::SESSION_REVOKED,
        "this session was signed out",
    )
}

/// The longest an open stream goes between looks at its session (a revocation wakes it at
/// once; this bounds how late an expiry on a test clock is noticed).
const SESSION_LOOK: Duration = Duration::from_secs(5);

impl Auth {
    /// An `Auth` with no keys yet; [`Auth::start`] loads them.
    pub fn new(login: Channel, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            verifier: RwLock::new(Arc::new(TokenVerifier::new(Vec::new()))),
            revoked: RwLock::default(),
            clock,
            login: LoginInternalClient::new(login),
            key_refresh_wanted: Notify::new(),
            revocations_since: AtomicI64::new(0),
            revocations_loaded: AtomicBool::new(false),
            verified: Mutex::default(),
            revocation_generation: watch::channel(0).0,
            session_expiry: Mutex::default(),
        })
    }

    /// Starts the key refresher and the revocation poller; they stop when the returned tasks
    /// are dropped.
    pub fn start(self: &Arc<Self>) -> Tasks {
        let mut tasks = Tasks::default();
        let this = Arc::clone(self);
        tasks.spawn(async move { this.refresh_keys_forever().await });
        let this = Arc::clone(self);
        tasks.spawn(async move { this.poll_revocations_forever().await });
        tasks
    }

    /// Checks the `authorization: Bearer …` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<AccessClaims, tonic::Status> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                status(
                    Code::Unauthenticated,
                    reason::MISSING_TOKEN,
                    "this call needs an access token",
                )
            })?;
        let verifier = Arc::clone(&self.verifier.read().expect("verifier lock poisoned"));
        // Until the keys and the first revocation list are in, no token is trusted: a freshly
        // started gateway must not accept a session that was signed out before it started.
        if verifier.key_ids().is_empty() || !self.revocations_loaded.load(Ordering::SeqCst) {
            return Err(status(
                Code::Unavailable,
                reason::UPSTREAM_UNAVAILABLE,
                "the gateway is still loading token keys; retry shortly",
            ));
        }
        let now = self.clock.now_ms();
        let claims = match self.cached(token, now) {
            Some(claims) => claims,
            None => {
                let claims = verifier.verify(token, now).map_err(|e| match e {
                    TokenError::Expired => status(
                        Code::Unauthenticated,
                        reason::TOKEN_EXPIRED,
                        "access token expired; refresh it",
                    ),
                    TokenError::UnknownKey(_) => {
                        self.key_refresh_wanted.notify_one();
                        status(
                            Code::Unauthenticated,
                            reason::INVALID_TOKEN,
                            "access token key is not known",
                        )
                    }
                    _ => status(
                        Code::Unauthenticated,
                        reason::INVALID_TOKEN,
                        "invalid access token",
                    ),
                })?;
                self.remember(token, &claims);
                let mut expiry = juntos_store::lock(&self.session_expiry);
                let latest = expiry.entry(claims.session_id.clone()).or_default();
                *latest = (*latest).max(claims.expires_at_ms);
                claims
            }
        };
        if self.is_revoked(&claims.session_id) {
            return Err(revoked());
        }
        Ok(claims)
    }

    /// Completes, with the status to end a call with, when `session_id` is revoked or, given
    /// `expires_at_ms`, when that has passed and no later token of the session has been seen.
    pub fn session_end(
        self: &Arc<Self>,
        session_id: String,
        expires_at_ms: Option<i64>,
        clock: SharedClock,
    ) -> super::stream_guard::Stop {
        let this = Arc::clone(self);
        let mut revocations = self.revocation_generation.subscribe();
        Box::pin(async move {
            // Without an expiry to enforce, only a revocation ends the call.
            let mut expires_at_ms = expires_at_ms.unwrap_or(i64::MAX);
            loop {
                if this.is_revoked(&session_id) {
                    return revoked();
                }
                let now = clock.now_ms();
                if now >= expires_at_ms {
                    let latest = juntos_store::lock(&this.session_expiry)
                        .get(&session_id)
                        .copied()
                        .unwrap_or(0);
                    if latest <= now {
                        return status(
                            Code::Unauthenticated,
                            reason::TOKEN_EXPIRED,
                            "access token expired; refresh it and reconnect",
                        );
                    }
                    expires_at_ms = latest;
                    continue;
                }
                let until_expiry =
                    Duration::from_millis(u64::try_from(expires_at_ms - now).unwrap_or(u64::MAX));
                tokio::select! {
                    changed = revocations.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(SESSION_LOOK).await;
                        }
                    }
                    () = tokio::time::sleep(until_expiry.min(SESSION_LOOK)) => {}
                }
            }
        })
    }

    fn is_revoked(&self, session_id: &str) -> bool {
        self.revoked
            .read()
            .expect("revocation lock poisoned")
            .contains_key(session_id)
    }

    /// Forgets the expiry of sessions whose latest token has expired.
    pub fn forget_expired_sessions(&self) {
        let now = self.clock.now_ms();
        juntos_store::lock(&self.session_expiry).retain(|_, expires| *expires > now);
    }

    /// The claims of a token verified before, if it has not expired since. Verifying an Ed25519
    /// signature costs tens of microseconds; a client sends the same token with every call for
    /// its 15-minute life.
    fn cached(&self, token: &str, now_ms: i64) -> Option<AccessClaims> {
        let verified = juntos_store::lock(&self.verified);
        verified
            .get(token)
            .filter(|c| c.expires_at_ms > now_ms)
            .cloned()
    }

    /// Remembers a verified token; the cache is bounded by dropping everything when full.
    fn remember(&self, token: &str, claims: &AccessClaims) {
        let mut verified = juntos_store::lock(&self.verified);
        if verified.len() >= VERIFIED_CACHE_MAX {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
    }

    async fn refresh_keys_forever(&self) {
        loop {
            let wait = match self.fetch_keys().await {
                Ok(()) => KEY_REFRESH,
                Err(e) => {
                    tracing::warn!(error = %e, "could not fetch token verification keys");
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.key_refresh_wanted.notified() => {
                    tokio::time::sleep(KEY_REFRESH_MIN_GAP).await;
                }
            }
        }
    }

    async fn fetch_keys(&self) -> Result<(), tonic::Status> {
        let keys = self
            .login
            .clone()
            .get_verification_keys(GetVerificationKeysRequest {})
            .await?
            .into_inner()
            .keys;
        let keys = keys
            .into_iter()
            .filter_map(|k| {
                Some((
                    k.key_id,
                    <[u8; 32]>::try_from(k.public_key.as_slice()).ok()?,
                ))
            })
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Err(tonic::Status::internal(
                "login-service returned no verification keys",
            ));
        }
        let verifier = Arc::new(TokenVerifier::new(keys));
        let mut current = self.verifier.write().expect("verifier lock poisoned");
        if current.key_ids() != verifier.key_ids() {
            // A withdrawn key must stop vouching for tokens at once.
            juntos_store::lock(&self.verified).clear();
        }
        *current = verifier;
        Ok(())
    }

    async fn poll_revocations_forever(&self) {
        loop {
            if let Err(e) = self.poll_revocations().await {
                tracing::warn!(error = %e, "could not poll session revocations");
            }
            tokio::time::sleep(REVOCATION_POLL).await;
        }
    }

    async fn poll_revocations(&self) -> Result<(), tonic::Status> {
        let since_ms = self.revocations_since.load(Ordering::SeqCst);
        let answer = self
            .login
            .clone()
            .list_revocations(ListRevocationsRequest { since_ms })
            .await?
            .into_inner();
        let now = self.clock.now_ms();
        let mut newly_revoked = false;
        {
            let mut revoked = self.revoked.write().expect("revocation lock poisoned");
            for r in answer.revocations {
                newly_revoked |= revoked.insert(r.session_id, r.forget_after_ms).is_none();
            }
            revoked.retain(|_, forget_after| *forget_after > now);
        }
        if newly_revoked {
            self.revocation_generation.send_modify(|g| *g += 1);
        }
        self.revocations_since.store(
            (answer.server_time_ms - REVOCATION_OVERLAP_MS).max(0),
            Ordering::SeqCst,
        );
        self.revocations_loaded.store(true, Ordering::SeqCst);
        Ok(())
    }
}
