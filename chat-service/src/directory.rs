//! Which devices each user has: the chat service checks every send's device list against it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
use juntos_proto::login::v1::{ActiveDevicesRequest, Aspect, VisibleToRequest};
use tonic::transport::Channel;

/// A user id → that user's active device ids. Users that do not exist are absent.
pub type DeviceMap = HashMap<String, Vec<String>>;

/// The directory could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("device directory unavailable: {}", .0.message())]
pub struct DirectoryError(#[source] pub tonic::Status);

/// The source of truth for users' active devices (login-service).
#[async_trait]
pub trait DeviceDirectory: Send + Sync + 'static {
    /// The active devices of each of `user_ids` that exists. May be slightly out of date (see
    /// the implementation's cache).
    async fn active_devices(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError>;

    /// Like [`DeviceDirectory::active_devices`], but never from a cache: the chat service asks
    /// this before refusing a send as stale, so a client whose list is newer than the cache
    /// is not refused.
    async fn active_devices_fresh(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError> {
        self.active_devices(user_ids).await
    }

    /// Those of `owners` (each once, in order) whose presence `viewer` may see: itself, and
    /// mutual contacts who allow it (login's `VisibleTo`). Never cached: a changed setting
    /// takes effect at the next question.
    async fn presence_visible(
        &self,
        viewer: &str,
        owners: &[String],
    ) -> Result<Vec<String>, DirectoryError>;
}

/// Cache entries kept before expired ones are swept.
const CACHE_SWEEP_AT: usize = 100_000;

/// [`DeviceDirectory`] over `LoginInternal.ActiveDevices`, with a short per-user cache.
///
/// A cached answer is at most `ttl` old (1 s by default). Sends whose list matches the cache go
/// through without a call to login; a list that does not match is checked again without the
/// cache before the send is refused. So the cache can only let a send through that misses a
/// device signed in during the last `ttl` (that device then syncs older messages from its
/// sender's other devices, as any new device does) or that includes one signed out in it.
pub struct LoginDirectory {
    client: LoginInternalClient<Channel>,
    ttl: Duration,
    /// User id → its cached answer.
    cache: Mutex<HashMap<String, Cached>>,
}

/// When a user's devices were fetched, and the devices (`None`: no such user).
type Cached = (Instant, Option<Vec<String>>);

impl std::fmt::Debug for LoginDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginDirectory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LoginDirectory {
    /// Asks login-service over `channel`, caching answers for `ttl` (zero disables the cache).
    pub fn new(channel: Channel, ttl: Duration) -> Self {
        Self {
            client: LoginInternalClient::new(channel),
            ttl,
            cache: Mutex::default(),
        }
    }

    async fn fetch(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError> {
        let response = self
            .client
            .clone()
            .active_devices(ActiveDevicesRequest {
                user_ids: user_ids.to_vec(),
            })
            .await
            .map_err(DirectoryError)?
            .into_inner();
        let found: DeviceMap = response
            .users
            .into_iter()
            .map(|u| (u.user_id, u.device_ids))
            .collect();
        if !self.ttl.is_zero() {
            let now = Instant::now();
            let mut cache = juntos_store::lock(&self.cache);
            if cache.len() >= CACHE_SWEEP_AT {
                let ttl = self.ttl;
                cache.retain(|_, (at, _)| now.duration_since(*at) < ttl);
            }
            for user_id in user_ids {
                cache.insert(user_id.clone(), (now, found.get(user_id).cloned()));
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl DeviceDirectory for LoginDirectory {
    async fn active_devices(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError> {
        if !self.ttl.is_zero() {
            let now = Instant::now();
            let cache = juntos_store::lock(&self.cache);
            let mut hits = DeviceMap::new();
            let all_cached = user_ids.iter().all(|user_id| match cache.get(user_id) {
                Some((at, devices)) if now.duration_since(*at) < self.ttl => {
                    if let Some(devices) = devices {
                        hits.insert(user_id.clone(), devices.clone());
                    }
                    true
                }
                _ => false,
            });
            if all_cached {
                return Ok(hits);
            }
        }
        self.fetch(user_ids).await
    }

    async fn active_devices_fresh(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError> {
        self.fetch(user_ids).await
    }

    async fn presence_visible(
        &self,
        viewer: &str,
        owners: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .client
            .clone()
            .visible_to(VisibleToRequest {
                viewer_user_id: viewer.to_owned(),
                owner_user_ids: owners.to_vec(),
                aspect: Aspect::Presence as i32,
            })
            .await
            .map_err(DirectoryError)?
            .into_inner()
            .owner_user_ids)
    }
}

/// A directory the test sets; it can imitate a stale cache.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeDirectory {
    users: Mutex<DeviceMap>,
    /// What `active_devices` answers when set (a stale cache); `users` otherwise.
    cached: Mutex<Option<DeviceMap>>,
    /// `(viewer, owner)` pairs whose presence is hidden; everything else is visible.
    hidden: Mutex<std::collections::HashSet<(String, String)>>,
}

#[cfg(test)]
impl FakeDirectory {
    /// Sets `user_id`'s devices.
    pub fn set(&self, user_id: &str, devices: &[&str]) {
        self.users.lock().expect("lock").insert(
            user_id.to_owned(),
            devices.iter().map(|d| (*d).to_owned()).collect(),
        );
    }

    /// Makes `active_devices` answer from a frozen copy of the current state (as a cache would)
    /// while `active_devices_fresh` keeps answering the truth.
    pub fn freeze_cache(&self) {
        let users = self.users.lock().expect("lock").clone();
        *self.cached.lock().expect("lock") = Some(users);
    }

    /// Hides (or shows again) `owner`'s presence from `viewer`.
    pub fn hide_presence(&self, viewer: &str, owner: &str, hidden: bool) {
        let pair = (viewer.to_owned(), owner.to_owned());
        let mut set = self.hidden.lock().expect("lock");
        if hidden {
            set.insert(pair);
        } else {
            set.remove(&pair);
        }
    }

    fn answer(map: &DeviceMap, user_ids: &[String]) -> DeviceMap {
        user_ids
            .iter()
            .filter_map(|u| map.get(u).map(|d| (u.clone(), d.clone())))
            .collect()
    }
}

#[cfg(test)]
#[async_trait]
impl DeviceDirectory for FakeDirectory {
    async fn active_devices(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError> {
        if let Some(cached) = &*self.cached.lock().expect("lock") {
            return Ok(Self::answer(cached, user_ids));
        }
        self.active_devices_fresh(user_ids).await
    }

    async fn active_devices_fresh(&self, user_ids: &[String]) -> Result<DeviceMap, DirectoryError> {
        Ok(Self::answer(&self.users.lock().expect("lock"), user_ids))
    }

    async fn presence_visible(
        &self,
        viewer: &str,
        owners: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        let hidden = self.hidden.lock().expect("lock");
        let mut seen = std::collections::HashSet::new();
        Ok(owners
            .iter()
            .filter(|o| seen.insert(o.as_str()))
            .filter(|o| !hidden.contains(&(viewer.to_owned(), (*o).clone())))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use juntos_proto::login::v1::login_internal_server::{LoginInternal, LoginInternalServer};
    use juntos_proto::login::v1::{
        ActiveDeviceIds, ActiveDevicesResponse, GetVerificationKeysRequest,
        GetVerificationKeysResponse, ListRevocationsRequest, ListRevocationsResponse,
        VisibleToResponse,
    };
    use tonic::{Request, Response, Status};

    use super::*;

    /// login's internal service with one user, `u1` (`d1`, `d2`), counting `ActiveDevices` calls.
    #[derive(Clone, Default)]
    struct FakeLogin {
        calls: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl LoginInternal for FakeLogin {
        async fn get_verification_keys(
            &self,
            _: Request<GetVerificationKeysRequest>,
        ) -> Result<Response<GetVerificationKeysResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn list_revocations(
            &self,
            _: Request<ListRevocationsRequest>,
        ) -> Result<Response<ListRevocationsResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn active_devices(
            &self,
            request: Request<ActiveDevicesRequest>,
        ) -> Result<Response<ActiveDevicesResponse>, Status> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let users = request
                .into_inner()
                .user_ids
                .into_iter()
                .filter(|u| u == "u1")
                .map(|user_id| ActiveDeviceIds {
                    user_id,
                    device_ids: vec!["d1".into(), "d2".into()],
                })
                .collect();
            Ok(Response::new(ActiveDevicesResponse { users }))
        }

        async fn visible_to(
            &self,
            _: Request<VisibleToRequest>,
        ) -> Result<Response<VisibleToResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    async fn start(ttl: Duration) -> (LoginDirectory, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let login = FakeLogin::default();
        let calls = Arc::clone(&login.calls);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LoginInternalServer::new(login))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect_lazy();
        (LoginDirectory::new(channel, ttl), calls)
    }

    fn ids(users: &[&str]) -> Vec<String> {
        users.iter().map(|u| (*u).to_owned()).collect()
    }

    #[tokio::test]
    async fn answers_are_cached_for_the_ttl_and_fresh_lookups_skip_the_cache() {
        let (directory, calls) = start(Duration::from_millis(300)).await;
        let both = ids(&["u1", "nobody"]);
        let first = directory.active_devices(&both).await.expect("lookup");
        assert_eq!(first, DeviceMap::from([("u1".into(), ids(&["d1", "d2"]))]));
        // Known and unknown users alike come from the cache now.
        assert_eq!(
            directory.active_devices(&both).await.expect("lookup"),
            first
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A user not cached yet costs a call.
        directory
            .active_devices(&ids(&["u1", "u2"]))
            .await
            .expect("lookup");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        directory.active_devices_fresh(&both).await.expect("fresh");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(400)).await;
        directory.active_devices(&both).await.expect("lookup");
        assert_eq!(calls.load(Ordering::SeqCst), 4, "expired");
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time() {
        let (directory, calls) = start(Duration::ZERO).await;
        for _ in 0..3 {
            directory
                .active_devices(&ids(&["u1"]))
                .await
                .expect("lookup");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
