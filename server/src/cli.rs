//! Command-line flags of the `juntos` binary. Every flag has a `JUNTOS_*` environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Juntos: end-to-end encrypted messaging backend. One binary; the subcommand picks the role.
#[derive(Debug, Parser)]
#[command(name = "juntos", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub role: Role,
}

// Parsed once at start-up: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Role {
    /// Every role in one process on embedded defaults (in-memory codes, SQLite, console SMS).
    All(AllArgs),
    /// The routing proxy: the one public endpoint.
    Gateway(GatewayArgs),
    /// The one-time code service.
    Otp(OtpArgs),
    /// The account, device and token service.
    Login(LoginArgs),
    /// The messaging service: mailboxes, sends and live streams.
    Chat(ChatArgs),
    /// The media service: 24-hour statuses, media blobs, profile photos.
    Media(MediaArgs),
    /// Make the internal CA and a certificate per role, for mutual TLS between roles.
    Certs(CertsArgs),
}

/// The internal certificates of a role that runs alone.
#[derive(Debug, Args)]
pub struct InternalTlsArgs {
    /// Folder with this role's internal certificate `tls.crt`, its key `tls.key` and the
    /// internal CA `ca.crt` (a cert-manager Secret mounted as a folder, or `<out>/<role>` from
    /// `juntos certs`). Roles accept calls only from each other, over mutual TLS.
    #[arg(long, env = "JUNTOS_INTERNAL_TLS_DIR")]
    pub internal_tls_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Where to write `ca.crt`, `ca.key` and `<role>/{tls.crt,tls.key,ca.crt}` for gateway, otp,
    /// login, chat and media.
    #[arg(long)]
    pub out: PathBuf,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Another DNS name or IP address to put in every role's certificate besides
    /// `<role>.juntos.internal` (repeatable).
    #[arg(long)]
    pub name: Vec<String>,
    /// Replace the certificates (and CA) already in `--out`.
    #[arg(long)]
    pub force: bool,
}

/// Options every role has.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Seconds SIGTERM waits for open calls and streams to finish.
    #[arg(long, env = "JUNTOS_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,
    /// Tests only: offset the clock by the milliseconds written in this file.
    #[arg(long, env = "JUNTOS_TEST_CLOCK_FILE", hide = true)]
    pub test_clock_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AllArgs {
    /// Address of the gateway, the one public endpoint.
    #[arg(long, env = "JUNTOS_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Where keys, databases and the SMS outbox live; created if missing.
    #[arg(long, env = "JUNTOS_DATA_DIR", default_value = "./juntos-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub otp: OtpOptions,
    #[command(flatten)]
    pub login: LoginOptions,
    #[command(flatten)]
    pub chat: ChatOptions,
    #[command(flatten)]
    pub media: MediaOptions,
    #[command(flatten)]
    pub gateway: GatewayOptions,
    /// Serve TLS with a certificate for localhost made here, signed by a local CA kept in
    /// `<data-dir>/tls` (its fingerprint is printed; clients trust `<data-dir>/tls/ca.crt`).
    #[arg(long, env = "JUNTOS_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "insecure_plaintext"])]
    pub tls_self_signed: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address of the public endpoint. Plaintext is served only on a loopback address (unless
    /// `--insecure-plaintext`); anywhere else give `--tls-cert` and `--tls-key`.
    #[arg(long, env = "JUNTOS_LISTEN", default_value = "0.0.0.0:7700")]
    pub listen: SocketAddr,
    /// otp-service endpoints: comma-separated `https://host:port` or `dns:///name:port` (every
    /// address of the name is an endpoint, re-resolved every discovery interval). Always mutual
    /// TLS with the internal certificates.
    #[arg(long, env = "JUNTOS_OTP")]
    pub otp: String,
    /// login-service endpoints, as for `--otp`.
    #[arg(long, env = "JUNTOS_LOGIN")]
    pub login: String,
    /// chat endpoints, as for `--otp`. Without it, chat calls answer UNAVAILABLE.
    #[arg(long, env = "JUNTOS_CHAT")]
    pub chat: Option<String>,
    /// media endpoints, as for `--otp`. Without it, status calls answer UNAVAILABLE.
    #[arg(long, env = "JUNTOS_MEDIA")]
    pub media: Option<String>,
    #[command(flatten)]
    pub tls: InternalTlsArgs,
    #[command(flatten)]
    pub gateway: GatewayOptions,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct OtpArgs {
    #[arg(long, env = "JUNTOS_LISTEN", default_value = "127.0.0.1:7701")]
    pub listen: SocketAddr,
    /// Where the code secret and the console SMS outbox live.
    #[arg(long, env = "JUNTOS_DATA_DIR", default_value = "./juntos-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub otp: OtpOptions,
    #[command(flatten)]
    pub tls: InternalTlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(long, env = "JUNTOS_LISTEN", default_value = "127.0.0.1:7702")]
    pub listen: SocketAddr,
    /// Where the database and the token signing key live.
    #[arg(long, env = "JUNTOS_DATA_DIR", default_value = "./juntos-data")]
    pub data_dir: PathBuf,
    /// otp-service endpoints: comma-separated `https://host:port` or `dns:///name:port`.
    #[arg(long, env = "JUNTOS_OTP")]
    pub otp: String,
    #[command(flatten)]
    pub tls: InternalTlsArgs,
    #[command(flatten)]
    pub login: LoginOptions,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[arg(long, env = "JUNTOS_LISTEN", default_value = "127.0.0.1:7703")]
    pub listen: SocketAddr,
    /// Where the mailbox database (`chat.db`) lives.
    #[arg(long, env = "JUNTOS_DATA_DIR", default_value = "./juntos-data")]
    pub data_dir: PathBuf,
    /// login-service endpoints (for device lists): comma-separated `https://host:port` or
    /// `dns:///name:port`.
    #[arg(long, env = "JUNTOS_LOGIN")]
    pub login: String,
    /// Redis for device → pod routing and doorbells, shared by every chat pod. Without it,
    /// doorbells only reach streams in this process (one chat pod).
    #[arg(long, env = "JUNTOS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// MongoDB for mailboxes, sequence counters and dedupe keys (shared by every chat pod), e.g.
    /// `mongodb://host1,host2/juntos?replicaSet=rs0` (the path names the database, `juntos` when
    /// absent); `<data-dir>/chat.db` (SQLite, one pod only) when absent.
    #[arg(long, env = "JUNTOS_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    #[command(flatten)]
    pub chat: ChatOptions,
    #[command(flatten)]
    pub tls: InternalTlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct MediaArgs {
    #[arg(long, env = "JUNTOS_LISTEN", default_value = "127.0.0.1:7704")]
    pub listen: SocketAddr,
    /// Where the media database (`media.db`) and, without S3, the blob folder (`blobs`) live.
    #[arg(long, env = "JUNTOS_DATA_DIR", default_value = "./juntos-data")]
    pub data_dir: PathBuf,
    /// login-service endpoints (for who may see a profile photo): comma-separated
    /// `https://host:port` or `dns:///name:port`.
    #[arg(long, env = "JUNTOS_LOGIN")]
    pub login: String,
    /// MongoDB for statuses (shared by every media pod), e.g.
    /// `mongodb://host1,host2/juntos?replicaSet=rs0` (the path names the database, `juntos` when
    /// absent); `<data-dir>/media.db` (SQLite, one pod only) when absent.
    #[arg(long, env = "JUNTOS_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    #[command(flatten)]
    pub media: MediaOptions,
    #[command(flatten)]
    pub tls: InternalTlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// How codes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmsKind {
    /// Print to stdout and append to `<data-dir>/sms-outbox.jsonl`.
    Console,
    /// Twilio's Messages API.
    Twilio,
}

#[derive(Debug, Args)]
pub struct OtpOptions {
    /// Redis for codes and rate-limit counters (shared by every otp pod); in memory when absent.
    /// With `juntos all`, chat's device routing and doorbells use it too.
    #[arg(long, env = "JUNTOS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Secret key (hex, 32 bytes) that codes are hashed with; every otp pod needs the same one.
    /// When absent, `<data-dir>/otp-secret` is used (created on first start).
    #[arg(long, env = "JUNTOS_OTP_SECRET", hide_env_values = true)]
    pub otp_secret: Option<String>,
    /// How long a code stays valid, in seconds (at most 600).
    #[arg(long, env = "JUNTOS_OTP_CODE_TTL_SECS", default_value_t = 300)]
    pub otp_code_ttl_secs: u64,
    /// Waits between codes to one number, in seconds; the last repeats.
    #[arg(
        long,
        env = "JUNTOS_OTP_RESEND_SCHEDULE_SECS",
        default_value = "30,60,300,600",
        value_delimiter = ','
    )]
    pub otp_resend_schedule_secs: Vec<u64>,
    /// Codes one number may get per day.
    #[arg(long, env = "JUNTOS_OTP_MAX_CODES_PER_DAY", default_value_t = 10)]
    pub otp_max_codes_per_day: u32,
    /// Code requests one client address may make per hour.
    #[arg(long, env = "JUNTOS_OTP_IP_LIMIT_PER_HOUR", default_value_t = 60)]
    pub otp_ip_limit_per_hour: u32,
    /// Codes sent per country calling code per hour (SMS-pumping defence).
    #[arg(
        long,
        env = "JUNTOS_OTP_COUNTRY_BUDGET_PER_HOUR",
        default_value_t = 1000
    )]
    pub otp_country_budget_per_hour: u32,
    /// How codes are sent.
    #[arg(long, env = "JUNTOS_SMS", value_enum, default_value_t = SmsKind::Console)]
    pub sms: SmsKind,
    /// Twilio API base URL.
    #[arg(
        long,
        env = "JUNTOS_TWILIO_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_base_url: String,
    /// Twilio account SID.
    #[arg(long, env = "JUNTOS_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token.
    #[arg(long, env = "JUNTOS_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// The number (or messaging service) codes are sent from.
    #[arg(long, env = "JUNTOS_TWILIO_FROM")]
    pub twilio_from: Option<String>,
    /// Seconds before one Twilio request times out (up to 3 tries, so a code request stays well
    /// within a client's 30 s deadline).
    #[arg(long, env = "JUNTOS_TWILIO_TIMEOUT_SECS", default_value_t = 5)]
    pub twilio_timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct LoginOptions {
    /// Ed25519 seed (hex, 32 bytes) access tokens are signed with. When absent,
    /// `<data-dir>/token-signing-key` is used (created on first start).
    #[arg(long, env = "JUNTOS_TOKEN_SIGNING_KEY", hide_env_values = true)]
    pub token_signing_key: Option<String>,
    /// Most devices one account may have signed in at once.
    #[arg(long, env = "JUNTOS_MAX_DEVICES", default_value_t = 8)]
    pub max_devices: u32,
    /// MongoDB for accounts, devices, tokens, prekeys and contacts (shared by every login pod),
    /// e.g. `mongodb://host1,host2/juntos?replicaSet=rs0` (the path names the database, `juntos`
    /// when absent); `<data-dir>/login.db` (SQLite) when absent. With `juntos all`, chat's
    /// mailboxes and media's statuses use it too.
    #[arg(long, env = "JUNTOS_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChatOptions {
    /// Sends per second per user (sustained); more answer RESOURCE_EXHAUSTED reason SEND_RATE.
    #[arg(long, env = "JUNTOS_CHAT_SEND_RATE", default_value_t = 100)]
    pub chat_send_rate: u32,
    /// Sends per user in a burst.
    #[arg(long, env = "JUNTOS_CHAT_SEND_BURST", default_value_t = 200)]
    pub chat_send_burst: u32,
    /// Seconds between server heartbeats on a Connect stream (each also polls the mailbox).
    #[arg(long, env = "JUNTOS_CHAT_HEARTBEAT_SECS", default_value_t = 30)]
    pub chat_heartbeat_secs: u64,
    /// A Connect stream with nothing from the client for this many seconds is closed.
    #[arg(long, env = "JUNTOS_CHAT_IDLE_TIMEOUT_SECS", default_value_t = 90)]
    pub chat_idle_timeout_secs: u64,
    /// Most envelopes pushed on a Connect stream and not yet acked.
    #[arg(long, env = "JUNTOS_CHAT_PUSH_WINDOW", default_value_t = 500)]
    pub chat_push_window: usize,
    /// Milliseconds a user's device list from login is reused (0: ask login on every send).
    #[arg(long, env = "JUNTOS_CHAT_DIRECTORY_CACHE_MS", default_value_t = 1000)]
    pub chat_directory_cache_ms: u64,
    /// Hours a send's client_msg_id is remembered, so a retry gets the first answer.
    #[arg(
        long,
        env = "JUNTOS_CHAT_DEDUPE_RETENTION_HOURS",
        default_value_t = 168
    )]
    pub chat_dedupe_retention_hours: u64,
    /// The Ed25519 seed (64 hex digits) group notices are signed with; every chat pod needs the
    /// same one. Default: `<data-dir>/notice-signing-key`, created on first start.
    #[arg(long, env = "JUNTOS_NOTICE_SIGNING_KEY", hide_env_values = true)]
    pub notice_signing_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct MediaOptions {
    /// Seconds between sweeps that delete expired statuses from the store (listings stop
    /// showing a status at its expiry regardless).
    #[arg(long, env = "JUNTOS_STATUS_SWEEP_SECS", default_value_t = 60)]
    pub status_sweep_secs: u64,
    /// S3 bucket for media blobs (shared by every media pod); `<data-dir>/blobs` (one pod
    /// only) when absent.
    #[arg(long, env = "JUNTOS_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// An S3-compatible server instead of AWS, e.g. `http://minio:9000` (then path-style
    /// addressing, unless `--s3-virtual-hosted`).
    #[arg(long, env = "JUNTOS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "JUNTOS_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// `bucket.host` addressing with a custom endpoint.
    #[arg(long, env = "JUNTOS_S3_VIRTUAL_HOSTED")]
    pub s3_virtual_hosted: bool,
    /// Access key id; without it (and the secret) the AWS default chain is used (environment,
    /// profile, web identity, instance metadata).
    #[arg(long, env = "JUNTOS_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    #[arg(long, env = "JUNTOS_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Bytes per part of a resumable upload (S3 needs at least 5 MiB).
    #[arg(long, env = "JUNTOS_MEDIA_PART_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub media_part_bytes: u64,
    /// Largest image blob, in bytes.
    #[arg(long, env = "JUNTOS_MAX_IMAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_image_bytes: u64,
    /// Largest video blob, in bytes.
    #[arg(long, env = "JUNTOS_MAX_VIDEO_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_video_bytes: u64,
    /// Largest audio blob, in bytes.
    #[arg(long, env = "JUNTOS_MAX_AUDIO_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_audio_bytes: u64,
    /// Largest file blob, in bytes.
    #[arg(long, env = "JUNTOS_MAX_FILE_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Days a complete blob is kept (a status's blobs go with the status).
    #[arg(long, env = "JUNTOS_MEDIA_RETENTION_DAYS", default_value_t = 30)]
    pub media_retention_days: u64,
    /// Hours an upload may stay unfinished before it is deleted.
    #[arg(long, env = "JUNTOS_UPLOAD_GRACE_HOURS", default_value_t = 24)]
    pub upload_grace_hours: u64,
    /// Most unfinished uploads per user.
    #[arg(long, env = "JUNTOS_MAX_PENDING_UPLOADS", default_value_t = 20)]
    pub max_pending_uploads: u32,
    /// Most bytes one user may upload in any rolling 24 hours.
    #[arg(long, env = "JUNTOS_MAX_UPLOAD_BYTES_PER_DAY", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_upload_bytes_per_day: u64,
    /// Seconds between sweeps of expired media (unknown objects every 60th sweep).
    #[arg(long, env = "JUNTOS_MEDIA_SWEEP_SECS", default_value_t = 60)]
    pub media_sweep_secs: u64,
}

#[derive(Debug, Args)]
pub struct GatewayOptions {
    /// Requests per second per client address (sustained).
    #[arg(long, env = "JUNTOS_IP_RATE", default_value_t = 100)]
    pub ip_rate: u32,
    /// Burst per client address.
    #[arg(long, env = "JUNTOS_IP_BURST", default_value_t = 200)]
    pub ip_burst: u32,
    /// Requests per second per signed-in user (sustained).
    #[arg(long, env = "JUNTOS_USER_RATE", default_value_t = 50)]
    pub user_rate: u32,
    /// Burst per signed-in user.
    #[arg(long, env = "JUNTOS_USER_BURST", default_value_t = 100)]
    pub user_burst: u32,
    /// Largest request message, in bytes (the default fits a send of 256 envelopes of 64 KiB).
    #[arg(long, env = "JUNTOS_MAX_MESSAGE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds between `grpc.health.v1` probes of each upstream endpoint (1 s timeout); two
    /// failures in a row take an endpoint out of rotation and end its streams, one success
    /// brings it back.
    #[arg(long, env = "JUNTOS_HEALTH_INTERVAL_SECS", default_value_t = 2)]
    pub health_interval_secs: u64,
    /// Seconds between DNS resolutions of `dns:///` upstream endpoints.
    #[arg(long, env = "JUNTOS_DISCOVERY_INTERVAL_SECS", default_value_t = 5)]
    pub discovery_interval_secs: u64,
    /// Seconds a retryable call's request (buffered, at most one message) may take to arrive;
    /// slower ones answer DEADLINE_EXCEEDED.
    #[arg(long, env = "JUNTOS_BUFFERED_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub buffered_read_timeout_secs: u64,
    /// Bytes all buffered (retryable) requests together may hold; more answer
    /// RESOURCE_EXHAUSTED GATEWAY_BUSY. Raised to `--max-message-bytes` if below it.
    #[arg(long, env = "JUNTOS_MAX_BUFFERED_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_buffered_bytes: usize,
    /// The public endpoint's certificate chain (PEM), re-read when the file changes (as
    /// cert-manager rotates it); open streams keep going.
    #[arg(long, env = "JUNTOS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, env = "JUNTOS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext HTTP/2 on a non-loopback address, for a deployment whose load balancer
    /// terminates TLS in front of the gateway.
    #[arg(long, env = "JUNTOS_INSECURE_PLAINTEXT", conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,
}
