//! Building and running each role from its flags. `juntos all` composes the same functions on
//! loopback ports, so the one-process system takes exactly the code paths of a cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use juntos_chat::{
    ChatConfig, ChatService, ChatStore, Cluster, LoginDirectory, MongoChatStore, NoticeSeed,
    RedisRoutes, RoutesConfig, SqliteChatStore,
};
use juntos_clock::{OffsetFileClock, SharedClock, SystemClock};
use juntos_store::Tasks;
use juntos_store::mongo::MongoStore as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cli::{
    AllArgs, CertsArgs, ChatArgs, ChatOptions, CommonArgs, GatewayArgs, GatewayOptions,
    InternalTlsArgs, LoginArgs, LoginOptions, MediaArgs, MediaOptions, OtpArgs, OtpOptions,
    SmsKind,
};
use crate::gateway::{Gateway, GatewayConfig, PoolSettings, Rate, parse_endpoints};
use crate::serve::{local_routes, serve};
use crate::shutdown::Shutdown;
use crate::tls::internal::InternalTls;
use crate::tls::{ReloadingCert, Role};

/// A role's server task.
type RoleTask = JoinHandle<Result<(), String>>;

/// The clock every role of this process uses.
pub fn clock(common: &CommonArgs) -> SharedClock {
    match &common.test_clock_file {
        Some(path) => {
            tracing::warn!("test clock enabled: time is offset by the value in --test-clock-file");
            Arc::new(OffsetFileClock::new(path))
        }
        None => Arc::new(SystemClock),
    }
}

async fn bind(role: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{role}: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("{role}: {e}"))?;
    // A stable line on stdout so scripts and the test harness learn the port.
    println!("juntos: {role} listening on {local}");
    Ok(listener)
}

fn drain(common: &CommonArgs) -> Duration {
    Duration::from_secs(common.drain_secs)
}

/// Reads a 32-byte hex secret from a flag, or from (creating if needed) a file in the data dir.
fn secret_or_file(
    flag: Option<&str>,
    name: &str,
    file: &Path,
    load: impl FnOnce(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    match flag {
        Some(hex_value) => {
            let bytes = hex::decode(hex_value.trim())
                .map_err(|_| format!("{name} must be 64 hex digits"))?;
            if bytes.len() != 32 {
                return Err(format!("{name} must be 64 hex digits"));
            }
            Ok(bytes)
        }
        None => load(file).map_err(|e| format!("cannot read or create {}: {e}", file.display())),
    }
}

/// A role's internal credentials from `--internal-tls-dir`.
fn internal_tls(args: &InternalTlsArgs, role: Role) -> Result<Arc<InternalTls>, String> {
    let dir = args.internal_tls_dir.as_deref().ok_or_else(|| {
        format!(
            "{}: --internal-tls-dir is required: roles accept calls only from each other, over \
             mutual TLS; make the certificates with `juntos certs --out DIR` and give this role \
             DIR/{}",
            role.name(),
            role.name()
        )
    })?;
    InternalTls::from_dir(dir, role).map_err(|e| format!("{}: {e}", role.name()))
}

fn ensure_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))
}

/// What every role is started with besides its own options: the listener it serves on, its
/// internal credentials, and the process's clock, shutdown and drain time.
pub struct RoleContext {
    pub listener: TcpListener,
    pub tls: Arc<InternalTls>,
    pub clock: SharedClock,
    pub shutdown: Shutdown,
    /// How long open calls may finish after `shutdown`.
    pub drain: Duration,
}

impl RoleContext {
    /// For a role run on its own: `role` listening on `listen` with the credentials `tls`, and
    /// the clock and drain time of `common`.
    async fn bind(
        role: Role,
        listen: SocketAddr,
        tls: Arc<InternalTls>,
        common: &CommonArgs,
        shutdown: Shutdown,
    ) -> Result<Self, String> {
        Ok(Self {
            listener: bind(role.name(), listen).await?,
            tls,
            clock: clock(common),
            shutdown,
            drain: drain(common),
        })
    }

    /// Serves `routes` as role `name` (see [`serve`]).
    async fn serve(self, name: &str, routes: tonic::service::Routes) -> Result<(), String> {
        serve(
            name,
            self.listener,
            routes,
            self.tls,
            self.shutdown,
            self.drain,
        )
        .await
    }
}

// === otp ===

/// Starts otp-service on `role`'s listener.
pub async fn start_otp(
    role: RoleContext,
    options: &OtpOptions,
    data_dir: &Path,
) -> Result<RoleTask, String> {
    ensure_dir(data_dir)?;
    let config = juntos_otp::OtpConfig {
        code_ttl: Duration::from_secs(options.otp_code_ttl_secs),
        resend_schedule: options
            .otp_resend_schedule_secs
            .iter()
            .copied()
            .map(Duration::from_secs)
            .collect(),
        max_codes_per_day: options.otp_max_codes_per_day,
        ip_limit_per_hour: options.otp_ip_limit_per_hour,
        country_budget_per_hour: options.otp_country_budget_per_hour,
        ..juntos_otp::OtpConfig::default()
    };
    config.validate().map_err(|e| format!("otp: {e}"))?;
    let store: Arc<dyn juntos_otp::OtpStore> = match &options.redis_url {
        Some(url) => Arc::new(
            juntos_otp::RedisStore::connect(url)
                .await
                .map_err(|e| format!("otp: redis: {e}"))?,
        ),
        None => Arc::new(juntos_otp::MemoryStore::default()),
    };
    let sms: Arc<dyn juntos_otp::SmsSender> = match options.sms {
        SmsKind::Console => Arc::new(juntos_otp::ConsoleSender::new(
            data_dir.join("sms-outbox.jsonl"),
        )),
        SmsKind::Twilio => {
            let need = |v: &Option<String>, flag: &str| {
                v.clone()
                    .ok_or_else(|| format!("otp: --sms twilio needs {flag}"))
            };
            Arc::new(
                juntos_otp::TwilioSender::new(juntos_otp::TwilioConfig {
                    base_url: options.twilio_base_url.clone(),
                    account_sid: need(&options.twilio_account_sid, "--twilio-account-sid")?,
                    auth_token: need(&options.twilio_auth_token, "--twilio-auth-token")?,
                    from: need(&options.twilio_from, "--twilio-from")?,
                    timeout: Duration::from_secs(options.twilio_timeout_secs),
                    ..juntos_otp::TwilioConfig::default()
                })
                .map_err(|e| format!("otp: twilio: {e}"))?,
            )
        }
    };
    let secret = secret_or_file(
        options.otp_secret.as_deref(),
        "--otp-secret",
        &data_dir.join("otp-secret"),
        juntos_otp::load_or_create_secret,
    )?;
    let service = Arc::new(juntos_otp::OtpService::new(
        config,
        store,
        sms,
        secret,
        Arc::clone(&role.clock),
    ));
    let routes = local_routes(&["juntos.otp.v1.Otp"])
        .await?
        .add_service(juntos_otp::server(service));
    Ok(tokio::spawn(role.serve("otp", routes)))
}

/// `juntos otp`.
pub async fn run_otp(args: OtpArgs, shutdown: Shutdown) -> Result<Vec<RoleTask>, String> {
    let tls = internal_tls(&args.tls, Role::Otp)?;
    let role = RoleContext::bind(Role::Otp, args.listen, tls, &args.common, shutdown).await?;
    Ok(vec![start_otp(role, &args.otp, &args.data_dir).await?])
}

// === login ===

/// Starts login-service on `role`'s listener, verifying codes with the otp pool at `otp`.
pub async fn start_login(
    role: RoleContext,
    options: &LoginOptions,
    otp: &str,
    data_dir: &Path,
) -> Result<RoleTask, String> {
    ensure_dir(data_dir)?;
    let seed = secret_or_file(
        options.token_signing_key.as_deref(),
        "--token-signing-key",
        &data_dir.join("token-signing-key"),
        |path| juntos_login::load_or_create_signing_seed(path).map(|s| s.to_vec()),
    )?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| "token signing key must be 32 bytes".to_owned())?;
    let issuer = juntos_token::TokenIssuer::from_seed(&seed)
        .map_err(|e| format!("login: token signing key: {e}"))?;
    let store: Arc<dyn juntos_login::LoginStore> = match &options.mongodb_uri {
        Some(uri) => Arc::new(
            juntos_login::MongoLoginStore::connect(uri)
                .await
                .map_err(|e| format!("login: mongodb: {e}"))?,
        ),
        None => Arc::new(
            juntos_login::SqliteStore::open(&data_dir.join("login.db"))
                .map_err(|e| format!("login: database: {e}"))?,
        ),
    };
    let otp_channel = channel(otp, &role.tls, Role::Otp)?;
    let config = juntos_login::LoginConfig {
        max_devices_per_account: options.max_devices,
        ..juntos_login::LoginConfig::default()
    };
    let service = Arc::new(juntos_login::LoginService::new(
        config,
        store,
        Arc::new(juntos_login::OtpCodeVerifier::new(otp_channel)),
        issuer,
        Arc::clone(&role.clock),
    ));
    let (public, internal, directory) = juntos_login::servers(service);
    let routes = local_routes(&[
        "juntos.login.v1.Login",
        "juntos.login.v1.LoginInternal",
        "juntos.login.v1.Directory",
    ])
    .await?
    .add_service(public)
    .add_service(internal)
    .add_service(directory);
    Ok(tokio::spawn(role.serve("login", routes)))
}

/// A load-balanced channel to `peer` over a comma-separated endpoint list (a `dns:///` name is
/// resolved on each connection, not followed like the gateway's pools do), authenticated both
/// ways with the internal certificates.
fn channel(
    endpoints: &str,
    tls: &InternalTls,
    peer: Role,
) -> Result<tonic::transport::Channel, String> {
    let endpoints = parse_endpoints(endpoints)?
        .into_iter()
        .map(|source| {
            Ok(tonic::transport::Endpoint::from(source.uri())
                .tls_config(tls.client_config(peer))
                .map_err(|e| format!("{}: TLS: {e}", peer.name()))?
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(tonic::transport::Channel::balance_list(
        endpoints.into_iter(),
    ))
}

/// `juntos login`.
pub async fn run_login(args: LoginArgs, shutdown: Shutdown) -> Result<Vec<RoleTask>, String> {
    let tls = internal_tls(&args.tls, Role::Login)?;
    let role = RoleContext::bind(Role::Login, args.listen, tls, &args.common, shutdown).await?;
    let task = start_login(role, &args.login, &args.otp, &args.data_dir).await?;
    Ok(vec![task])
}

// === chat ===

/// Starts the chat service on `role`'s listener, checking device lists with the login pool at
/// `login`; with `redis_url`, streams and doorbells span every chat pod on that Redis; with
/// `mongodb_uri`, mailboxes live in that MongoDB (shared by every pod) instead of
/// `<data_dir>/chat.db`.
pub async fn start_chat(
    role: RoleContext,
    options: &ChatOptions,
    login: &str,
    redis_url: Option<&str>,
    mongodb_uri: Option<&str>,
    data_dir: &Path,
) -> Result<RoleTask, String> {
    ensure_dir(data_dir)?;
    let config = ChatConfig {
        send_rate_per_second: options.chat_send_rate,
        send_burst: options.chat_send_burst,
        heartbeat: Duration::from_secs(options.chat_heartbeat_secs),
        idle_timeout: Duration::from_secs(options.chat_idle_timeout_secs),
        push_window: options.chat_push_window,
        dedupe_retention: Duration::from_secs(options.chat_dedupe_retention_hours * 60 * 60),
        notice_signing_seed: Some(notice_seed(options, data_dir)?),
    };
    config.validate().map_err(|e| format!("chat: {e}"))?;
    let store: Arc<dyn ChatStore> = match mongodb_uri {
        Some(uri) => Arc::new(
            MongoChatStore::connect(uri)
                .await
                .map_err(|e| format!("chat: mongodb: {e}"))?,
        ),
        None => Arc::new(
            SqliteChatStore::open(&data_dir.join("chat.db"))
                .map_err(|e| format!("chat: database: {e}"))?,
        ),
    };
    let directory = LoginDirectory::new(
        channel(login, &role.tls, Role::Login)?,
        Duration::from_millis(options.chat_directory_cache_ms),
    );
    let (cluster, mut tasks) = match redis_url {
        Some(url) => {
            let (routes, mut tasks) = RedisRoutes::start(
                url,
                juntos_chat::Doorbell::new(),
                RoutesConfig::for_heartbeat(config.heartbeat),
            )
            .await
            .map_err(|e| format!("chat: redis: {e}"))?;
            // Operators (and tests) match a route in Redis to the process holding it.
            println!("juntos: chat pod id {}", routes.pod_id());
            let (presence, presence_tasks) =
                juntos_chat::Presence::redis(url, config.heartbeat * 3)
                    .await
                    .map_err(|e| format!("chat: redis: {e}"))?;
            tasks.extend(presence_tasks);
            (Some(Cluster { routes, presence }), tasks)
        }
        None => (None, Tasks::default()),
    };
    let service = ChatService::new(
        config,
        store,
        Arc::new(directory),
        Arc::clone(&role.clock),
        role.shutdown.clone(),
        cluster,
    );
    tasks.extend(service.start());
    let routes = local_routes(&["juntos.chat.v1.Chat", "juntos.chat.v1.Groups"])
        .await?
        .add_service(juntos_chat::server(Arc::clone(&service)))
        .add_service(juntos_chat::groups_server(service));
    Ok(tokio::spawn(async move {
        let served = role.serve("chat", routes).await;
        drop(tasks);
        served
    }))
}

/// The seed of the group notice signing key: the flag, or `<data_dir>/notice-signing-key`.
fn notice_seed(options: &ChatOptions, data_dir: &Path) -> Result<NoticeSeed, String> {
    let seed = secret_or_file(
        options.notice_signing_key.as_deref(),
        "--notice-signing-key",
        &data_dir.join("notice-signing-key"),
        |path| juntos_login::load_or_create_signing_seed(path).map(|s| s.to_vec()),
    )?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| "notice signing key must be 32 bytes".to_owned())?;
    Ok(NoticeSeed(seed))
}

/// `juntos chat`.
pub async fn run_chat(args: ChatArgs, shutdown: Shutdown) -> Result<Vec<RoleTask>, String> {
    let tls = internal_tls(&args.tls, Role::Chat)?;
    let role = RoleContext::bind(Role::Chat, args.listen, tls, &args.common, shutdown).await?;
    let task = start_chat(
        role,
        &args.chat,
        &args.login,
        args.redis_url.as_deref(),
        args.mongodb_uri.as_deref(),
        &args.data_dir,
    )
    .await?;
    Ok(vec![task])
}

// === media ===

/// Starts the media service (statuses, media blobs, profile photos) on `role`'s listener, asking
/// the login pool at `login` who may see a profile photo; with `mongodb_uri`, statuses and the
/// blob index live in that MongoDB (shared by every pod) instead of `<data_dir>/media.db`; blobs
/// are in the S3 bucket of `options`, else in `<data_dir>/blobs`.
pub async fn start_media(
    role: RoleContext,
    options: &MediaOptions,
    login: &str,
    mongodb_uri: Option<&str>,
    data_dir: &Path,
) -> Result<RoleTask, String> {
    ensure_dir(data_dir)?;
    let config = juntos_media::StatusConfig {
        sweep_interval: Duration::from_secs(options.status_sweep_secs),
    };
    config.validate().map_err(|e| format!("media: {e}"))?;
    let media_config = media_config(options);
    media_config.validate().map_err(|e| format!("media: {e}"))?;
    let (store, index): (
        Arc<dyn juntos_media::StatusStore>,
        Arc<dyn juntos_media::BlobIndex>,
    ) = match mongodb_uri {
        Some(uri) => {
            let store = Arc::new(
                juntos_media::MongoStatusStore::connect(uri)
                    .await
                    .map_err(|e| format!("media: mongodb: {e}"))?,
            );
            (store.clone(), store)
        }
        None => {
            let store = Arc::new(
                juntos_media::SqliteStatusStore::open(&data_dir.join("media.db"))
                    .map_err(|e| format!("media: database: {e}"))?,
            );
            (store.clone(), store)
        }
    };
    let blobs = blob_store(options, data_dir).await?;
    let service = juntos_media::StatusService::new(config, store, Arc::clone(&role.clock));
    let media = juntos_media::MediaService::new(
        media_config,
        index,
        blobs,
        Arc::new(juntos_media::LoginVisibility::new(channel(
            login,
            &role.tls,
            Role::Login,
        )?)),
        Arc::clone(&role.clock),
    );
    let sweeper = service.start();
    let media_sweeper = media.start();
    let routes = local_routes(&["juntos.media.v1.Statuses", "juntos.media.v1.Media"])
        .await?
        .add_service(juntos_media::server(service, Arc::clone(&media)))
        .add_service(juntos_media::media_server(media));
    Ok(tokio::spawn(async move {
        let served = role.serve("media", routes).await;
        drop((sweeper, media_sweeper));
        served
    }))
}

fn media_config(options: &MediaOptions) -> juntos_media::MediaConfig {
    const HOUR: u64 = 60 * 60;
    juntos_media::MediaConfig {
        max_image_bytes: options.max_image_bytes,
        max_video_bytes: options.max_video_bytes,
        max_audio_bytes: options.max_audio_bytes,
        max_file_bytes: options.max_file_bytes,
        retention: Duration::from_secs(options.media_retention_days.saturating_mul(24 * HOUR)),
        upload_grace: Duration::from_secs(options.upload_grace_hours.saturating_mul(HOUR)),
        max_pending_uploads: options.max_pending_uploads,
        max_bytes_per_day: options.max_upload_bytes_per_day,
        sweep_interval: Duration::from_secs(options.media_sweep_secs),
    }
}

/// The S3 bucket of `options`, else the folder `<data_dir>/blobs`.
async fn blob_store(
    options: &MediaOptions,
    data_dir: &Path,
) -> Result<Arc<dyn juntos_media::BlobStore>, String> {
    let Some(bucket) = &options.s3_bucket else {
        let folder = juntos_media::FolderBlobStore::open(data_dir.join("blobs"))
            .await
            .map_err(|e| format!("media: blob folder: {e}"))?
            .with_part_size(options.media_part_bytes);
        return Ok(Arc::new(folder));
    };
    if options.media_part_bytes < 5 * 1024 * 1024 {
        return Err("media: --media-part-bytes must be at least 5 MiB on S3".into());
    }
    let credentials = match (&options.s3_access_key, &options.s3_secret_key) {
        (Some(key), Some(secret)) => Some((key.clone(), secret.clone())),
        (None, None) => None,
        _ => return Err("media: give both --s3-access-key and --s3-secret-key, or neither".into()),
    };
    let config = juntos_media::S3Config {
        bucket: bucket.clone(),
        endpoint: options.s3_endpoint.clone(),
        region: options.s3_region.clone(),
        path_style: options.s3_endpoint.is_some() && !options.s3_virtual_hosted,
        credentials,
        part_size: usize::try_from(options.media_part_bytes)
            .map_err(|_| "media: --media-part-bytes is too large")?,
    };
    Ok(Arc::new(juntos_media::S3BlobStore::connect(config).await))
}

/// `juntos media`.
pub async fn run_media(args: MediaArgs, shutdown: Shutdown) -> Result<Vec<RoleTask>, String> {
    let tls = internal_tls(&args.tls, Role::Media)?;
    let role = RoleContext::bind(Role::Media, args.listen, tls, &args.common, shutdown).await?;
    let task = start_media(
        role,
        &args.media,
        &args.login,
        args.mongodb_uri.as_deref(),
        &args.data_dir,
    )
    .await?;
    Ok(vec![task])
}

// === gateway ===

/// Where the gateway sends each role's calls: comma-separated endpoint lists. Without `chat`
/// (or `media`), chat (or status) calls answer UNAVAILABLE.
#[derive(Debug, Clone, Copy)]
pub struct Upstreams<'a> {
    pub otp: &'a str,
    pub login: &'a str,
    pub chat: Option<&'a str>,
    pub media: Option<&'a str>,
}

/// How the gateway serves its public endpoint.
pub struct PublicTls {
    /// `None`: plaintext HTTP/2 (loopback, or `--insecure-plaintext`).
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Re-reads the certificate files.
    tasks: Tasks,
}

impl PublicTls {
    /// Plaintext HTTP/2.
    pub fn plaintext() -> Self {
        Self {
            acceptor: None,
            tasks: Tasks::default(),
        }
    }

    /// Decides from the flags: `--tls-cert`/`--tls-key` (re-read when they change); else the
    /// self-signed certificate `juntos all --tls-self-signed` keeps in `self_signed_dir`; else
    /// plaintext, which is refused on anything but a loopback address unless
    /// `--insecure-plaintext` says a TLS-terminating proxy is in front.
    pub fn from_options(
        options: &GatewayOptions,
        listen: SocketAddr,
        self_signed_dir: Option<&Path>,
    ) -> Result<Self, String> {
        match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => {
                let cert = ReloadingCert::load(cert.clone(), key.clone())
                    .map_err(|e| format!("gateway: {e}"))?;
                let tasks = cert.watch();
                let resolver: Arc<dyn rustls::server::ResolvesServerCert> = cert;
                return Ok(Self {
                    acceptor: Some(crate::tls::server_config(resolver, None).into()),
                    tasks,
                });
            }
            (None, None) => {}
            _ => return Err("gateway: give both --tls-cert and --tls-key, or neither".into()),
        }
        if let Some(dir) = self_signed_dir {
            let mut names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                names.push(listen.ip().to_string());
            }
            let (leaf, fingerprint) = crate::tls::certs::self_signed(dir, &names)
                .map_err(|e| format!("gateway: --tls-self-signed: {e}"))?;
            let certified =
                crate::tls::certified_key(leaf.cert.as_bytes(), leaf.key.as_bytes(), "self-signed")
                    .map_err(|e| format!("gateway: {e}"))?;
            println!(
                "juntos: self-signed TLS certificate for {}; clients trust the CA {} (SHA-256 fingerprint {fingerprint}), e.g. juntos-cli --ca-file {}",
                names.join(", "),
                dir.join("ca.crt").display(),
                dir.join("ca.crt").display()
            );
            let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
            return Ok(Self {
                acceptor: Some(crate::tls::server_config(resolver, None).into()),
                tasks: Tasks::default(),
            });
        }
        if !listen.ip().is_loopback() && !options.insecure_plaintext {
            return Err(format!(
                "gateway: refusing to serve plaintext on {listen}: sign-in codes and tokens would \
                 cross the network in clear. Give --tls-cert and --tls-key (PEM), listen on a \
                 loopback address, or pass --insecure-plaintext when a TLS-terminating load \
                 balancer sits in front"
            ));
        }
        if options.insecure_plaintext && !listen.ip().is_loopback() {
            tracing::warn!(%listen, "serving plaintext on a non-loopback address (--insecure-plaintext): put TLS in front");
        }
        Ok(Self::plaintext())
    }
}

/// Starts the gateway on `role`'s listener in front of otp, login and (optionally) chat, without
/// media: [`start_gateway_with`] with no media endpoints, in plaintext.
pub async fn start_gateway(
    role: RoleContext,
    options: &GatewayOptions,
    otp: &str,
    login: &str,
    chat: Option<&str>,
) -> Result<RoleTask, String> {
    let upstreams = Upstreams {
        otp,
        login,
        chat,
        media: None,
    };
    start_gateway_with(role, PublicTls::plaintext(), options, upstreams).await
}

/// Starts the gateway on `role`'s listener (served as `public` says), in front of `upstreams`,
/// which it reaches with `role`'s internal credentials.
pub async fn start_gateway_with(
    role: RoleContext,
    public: PublicTls,
    options: &GatewayOptions,
    upstreams: Upstreams<'_>,
) -> Result<RoleTask, String> {
    let RoleContext {
        listener,
        tls,
        clock,
        shutdown,
        drain,
    } = role;
    let optional = |endpoints: Option<&str>, flag: &str| {
        endpoints
            .map(parse_endpoints)
            .transpose()
            .map_err(|e| format!("{flag}: {e}"))
            .map(Option::unwrap_or_default)
    };
    let config = GatewayConfig {
        otp: parse_endpoints(upstreams.otp).map_err(|e| format!("--otp: {e}"))?,
        login: parse_endpoints(upstreams.login).map_err(|e| format!("--login: {e}"))?,
        chat: optional(upstreams.chat, "--chat")?,
        media: optional(upstreams.media, "--media")?,
        internal_tls: tls,
        pools: PoolSettings {
            health_interval: Duration::from_secs(options.health_interval_secs.max(1)),
            health_timeout: Duration::from_secs(1),
            discovery_interval: Duration::from_secs(options.discovery_interval_secs.max(1)),
        },
        per_ip: Rate {
            per_second: options.ip_rate,
            burst: options.ip_burst,
        },
        per_user: Rate {
            per_second: options.user_rate,
            burst: options.user_burst,
        },
        max_message_bytes: options.max_message_bytes,
        buffered_read_timeout: Duration::from_secs(options.buffered_read_timeout_secs.max(1)),
        max_buffered_bytes: options
            .max_buffered_bytes
            .max(options.max_message_bytes.saturating_add(5)),
        drain,
    };
    let (gateway, tasks) = Gateway::new(config, clock).await?;
    Ok(tokio::spawn(async move {
        gateway.serve(listener, public.acceptor, shutdown).await;
        drop((tasks, public.tasks));
        Ok(())
    }))
}

/// `juntos gateway`.
pub async fn run_gateway(args: GatewayArgs, shutdown: Shutdown) -> Result<Vec<RoleTask>, String> {
    let tls = internal_tls(&args.tls, Role::Gateway)?;
    let public = PublicTls::from_options(&args.gateway, args.listen, None)?;
    let role = RoleContext::bind(Role::Gateway, args.listen, tls, &args.common, shutdown).await?;
    let upstreams = Upstreams {
        otp: &args.otp,
        login: &args.login,
        chat: args.chat.as_deref(),
        media: args.media.as_deref(),
    };
    let task = start_gateway_with(role, public, &args.gateway, upstreams).await?;
    Ok(vec![task])
}

// === all ===

/// `juntos all`: otp, login, chat and media on loopback ports, the gateway on `--listen`; the
/// roles authenticate each other with certificates made in memory at every start.
pub async fn run_all(args: AllArgs, shutdown: Shutdown) -> Result<Vec<RoleTask>, String> {
    let self_signed_dir = args.tls_self_signed.then(|| args.data_dir.join("tls"));
    if self_signed_dir.is_some() {
        ensure_dir(&args.data_dir)?;
    }
    let public = PublicTls::from_options(&args.gateway, args.listen, self_signed_dir.as_deref())?;
    let clock = clock(&args.common);
    let drain = drain(&args.common);
    let mut credentials = InternalTls::ephemeral()?;
    // Each role takes its certificate out of `credentials`.
    let mut context = |listener: TcpListener, role: Role| {
        let at = credentials
            .iter()
            .position(|(r, _)| *r == role)
            .expect("a certificate per role");
        RoleContext {
            listener,
            tls: credentials.swap_remove(at).1,
            clock: Arc::clone(&clock),
            shutdown: shutdown.clone(),
            drain,
        }
    };
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let otp_listener = bind("otp", loopback).await?;
    let login_listener = bind("login", loopback).await?;
    let chat_listener = bind("chat", loopback).await?;
    let media_listener = bind("media", loopback).await?;
    let url = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|addr| format!("https://{addr}"))
            .map_err(|e| e.to_string())
    };
    let otp_url = url(&otp_listener)?;
    let login_url = url(&login_listener)?;
    let chat_url = url(&chat_listener)?;
    let media_url = url(&media_listener)?;
    let otp = start_otp(context(otp_listener, Role::Otp), &args.otp, &args.data_dir).await?;
    let login = start_login(
        context(login_listener, Role::Login),
        &args.login,
        &otp_url,
        &args.data_dir,
    )
    .await?;
    let chat = start_chat(
        context(chat_listener, Role::Chat),
        &args.chat,
        &login_url,
        args.otp.redis_url.as_deref(),
        args.login.mongodb_uri.as_deref(),
        &args.data_dir,
    )
    .await?;
    let media = start_media(
        context(media_listener, Role::Media),
        &args.media,
        &login_url,
        args.login.mongodb_uri.as_deref(),
        &args.data_dir,
    )
    .await?;
    // The gateway binds last, so its "listening" line means the whole system is up.
    let gateway_listener = bind("gateway", args.listen).await?;
    let upstreams = Upstreams {
        otp: &otp_url,
        login: &login_url,
        chat: Some(&chat_url),
        media: Some(&media_url),
    };
    let gateway = start_gateway_with(
        context(gateway_listener, Role::Gateway),
        public,
        &args.gateway,
        upstreams,
    )
    .await?;
    Ok(vec![otp, login, chat, media, gateway])
}

// === certs ===

/// `juntos certs`: the internal CA and a certificate per role, written under `--out`.
pub fn run_certs(args: &CertsArgs) -> Result<(), String> {
    if args.out.join("ca.key").exists() && !args.force {
        return Err(format!(
            "{} already holds a CA; pass --force to replace every certificate in it",
            args.out.display()
        ));
    }
    let set = crate::tls::certs::RoleCerts::generate(args.days, &args.name)?;
    set.write(&args.out)?;
    let fingerprint = crate::tls::certs::fingerprint(&set.ca.pem().cert)?;
    println!(
        "juntos: internal CA and certificates for {} written to {} (CA SHA-256 fingerprint {fingerprint}); give each role --internal-tls-dir {}/<role>",
        Role::ALL.map(Role::name).join(", "),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
