//! The gateway, as an authenticated device sees it: the [`Api`] calls with this device's access
//! token, refreshed when it must be.
//!
//! Token handling: every authenticated call gets a fresh-enough access token first (refreshing
//! when it expires within [`REFRESH_MARGIN_MS`] by the local clock), and when the server still
//! answers TOKEN_EXPIRED (or INVALID_TOKEN, e.g. after a signing-key change) the call refreshes
//! once and retries. Refreshes are serialized by one async lock and run in their own task, so
//! a refresh token is never presented twice: not by two concurrent calls, and not by a caller
//! that gave up mid-refresh (which would otherwise lose the rotated token and later present
//! the old one, tripping the server's reuse detection).
//!
//! Every unary call goes through [`Gateway::unary`] (or [`Gateway::unary_status`], for callers
//! that read a refusal's details): `gateway.unary(Api::create_group, request)`. Only the streams
//! whose request cannot be sent twice as it is (the live connection, an upload) handle the
//! token themselves.
//!
//! One exception to refreshing lazily: the live connection (`messaging::receive`) refreshes
//! ahead of expiry and makes one call with the new token on its channel, because the gateway
//! ends a stream whose token expired unless it has seen a newer token of the session.

use std::future::Future;
use std::sync::Arc;

use juntos_clock::SharedClock;
use juntos_proto::error::{reason, reason_of};
use tonic::{Code, Status};

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::model::session::Tokens;
use crate::store::Store;

/// Refresh the access token when it expires within this many milliseconds.
pub(crate) const REFRESH_MARGIN_MS: i64 = 60_000;

/// The gateway's calls with this device's tokens.
pub(crate) struct Gateway {
    api: Arc<Api>,
    /// Where the session and its tokens are kept.
    store: Arc<Store>,
    clock: SharedClock,
    /// Held for the whole of every refresh (see the module doc).
    refresh_lock: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// An authenticated unary call of [`Api`]: a method taking the access token and its request,
/// such as `Api::create_group`.
pub(crate) trait Call<'a, Request, Answer> {
    type Future: Future<Output = Result<Answer, Status>> + Send + 'a;

    fn call(&self, api: &'a Api, access_token: &'a str, request: Request) -> Self::Future;
}

impl<'a, Request, Answer, F, Fut> Call<'a, Request, Answer> for F
where
    F: Fn(&'a Api, &'a str, Request) -> Fut,
    Fut: Future<Output = Result<Answer, Status>> + Send + 'a,
{
    type Future = Fut;

    fn call(&self, api: &'a Api, access_token: &'a str, request: Request) -> Fut {
        self(api, access_token, request)
    }
}

impl Gateway {
    pub(crate) fn new(api: Api, store: Arc<Store>, clock: SharedClock) -> Self {
        Self {
            api: Arc::new(api),
            store,
            clock,
            refresh_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The calls themselves, for those that take no access token (requesting a code, signing
    /// in).
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    /// `call` with `request` and an access token; on TOKEN_EXPIRED refreshes once and calls
    /// again. A session-ending answer clears the local session.
    pub(crate) async fn unary<Request, Answer, C>(
        &self,
        call: C,
        request: Request,
    ) -> Result<Answer>
    where
        Request: Clone + Send + Sync,
        C: for<'a> Call<'a, Request, Answer> + Sync,
    {
        match self.unary_status(call, request).await? {
            Ok(answer) => Ok(answer),
            Err(status) => Err(failure(&self.store, &status)),
        }
    }

    /// [`Gateway::unary`], but a refused call's status comes back as it is (the outer error is
    /// for local failures, refreshes that failed, and ended sessions), for callers that read the
    /// status details.
    pub(crate) async fn unary_status<Request, Answer, C>(
        &self,
        call: C,
        request: Request,
    ) -> Result<Result<Answer, Status>>
    where
        Request: Clone + Send + Sync,
        C: for<'a> Call<'a, Request, Answer> + Sync,
    {
        let (api, call, request) = (&*self.api, &call, &request);
        self.authorized_status(|token| {
            let request = request.clone();
            async move { call.call(api, &token, request).await }
        })
        .await
    }

    /// Runs `call` with an access token; on TOKEN_EXPIRED refreshes once and runs it again (so
    /// `call` must be able to run twice). A refused call's status comes back as it is (see
    /// [`Gateway::unary_status`]); a session-ending answer clears the local session.
    pub(crate) async fn authorized_status<T, F, Fut>(&self, call: F) -> Result<Result<T, Status>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let token = self.access_token().await?;
        let status = match call(token.clone()).await {
            Ok(answer) => return Ok(Ok(answer)),
            Err(status) => status,
        };
        let status = if needs_refresh(&status) {
            let token = self.refresh(&token).await?;
            match call(token).await {
                Ok(answer) => return Ok(Ok(answer)),
                Err(status) => status,
            }
        } else {
            status
        };
        let error = ClientError::from(&status);
        if error.ends_session() {
            return Err(failure(&self.store, &status));
        }
        Ok(Err(status))
    }

    /// The stored access token, refreshed first if it expires soon by the local clock.
    pub(crate) async fn access_token(&self) -> Result<String> {
        let session = self.store.session()?.ok_or(ClientError::NotSignedIn)?;
        if session
            .tokens
            .access_expires_within(self.clock.now_ms(), REFRESH_MARGIN_MS)
        {
            self.refresh(&session.tokens.access_token).await
        } else {
            Ok(session.tokens.access_token)
        }
    }

    /// A new access token to replace `stale`. When another call already replaced it, that token
    /// is the answer and no refresh happens.
    async fn refresh(&self, stale: &str) -> Result<String> {
        let guard = self.refresh_lock.clone().lock_owned().await;
        let (api, store, stale) = (self.api.clone(), self.store.clone(), stale.to_owned());
        // Its own task, holding the lock: it finishes (and stores the rotated tokens) even if the
        // caller stops waiting.
        let task = tokio::spawn(async move {
            let _guard = guard;
            refresh_locked(&api, &store, &stale).await
        });
        task.await.map_err(|_| ClientError::Server {
            message: "token refresh stopped unexpectedly".to_owned(),
        })?
    }
}

/// The refresh itself; the caller holds the refresh lock.
async fn refresh_locked(api: &Api, store: &Store, stale: &str) -> Result<String> {
    let session = store.session()?.ok_or(ClientError::NotSignedIn)?;
    if session.tokens.access_token != stale {
        return Ok(session.tokens.access_token);
    }
    let tokens = match api.refresh(session.tokens.refresh_token.clone()).await {
        Ok(tokens) => Tokens::from(tokens),
        Err(status) => return Err(failure(store, &status)),
    };
    if !store.update_tokens(&session.device_id, &tokens)? {
        // Signed out while the refresh was on the wire.
        return Err(ClientError::NotSignedIn);
    }
    tracing::debug!("access token refreshed");
    Ok(tokens.access_token)
}

/// Whether a failed call may succeed with a refreshed access token.
fn needs_refresh(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        && matches!(
            reason_of(status).as_deref(),
            Some(reason::TOKEN_EXPIRED | reason::INVALID_TOKEN)
        )
}

/// The error for `status`, clearing the local session when the server ended it.
fn failure(store: &Store, status: &Status) -> ClientError {
    let error = ClientError::from(status);
    if error.ends_session() {
        if let Err(e) = store.clear_session() {
            tracing::warn!(error = %e, "could not clear the ended session");
        }
        tracing::info!("the server ended this session");
    }
    error
}
