//! The `juntos` binary in one or several roles, on free loopback ports.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use juntos_testkit::s3::{self as s3_server, S3TestServer};
use juntos_testkit::twilio::{self, FakeTwilio};
use juntos_testkit::{MongoTestServer, RedisServer, unique_database};

/// The path of the `juntos-cli` binary, built once per test process like [`juntos_bin`].
/// `JUNTOS_CLI_BIN` overrides it.
pub fn juntos_cli_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("JUNTOS_CLI_BIN", "juntos-client", "juntos-cli"))
        .clone()
}

/// The `juntos` binary this process starts, chosen once.
static JUNTOS_BIN: OnceLock<PathBuf> = OnceLock::new();

/// The path of the `juntos` binary, built once per test process (`cargo build --bin juntos`,
/// in the profile the tests run in). `JUNTOS_BIN` or [`use_juntos_bin`] overrides it.
pub fn juntos_bin() -> PathBuf {
    JUNTOS_BIN
        .get_or_init(|| built_binary("JUNTOS_BIN", "juntos-server", "juntos"))
        .clone()
}

/// Makes `path` the `juntos` binary this process starts (juntos-bench builds a release one).
/// False if a binary was chosen already.
pub fn use_juntos_bin(path: PathBuf) -> bool {
    JUNTOS_BIN.set(path).is_ok()
}

/// `$override` if set, else `cargo build -p package --bin bin` in the tests' profile.
fn built_binary(override_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return PathBuf::from(path);
    }
    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for the {bin} binary: {e}"));
    assert!(status.success(), "building the {bin} binary failed");
    let path = profile_dir.join(bin);
    assert!(
        path.exists(),
        "{bin} binary not found at {}",
        path.display()
    );
    path
}

/// A running `juntos` process, killed on drop.
pub struct Process {
    child: Child,
    /// The role the process was started as (`all`, `otp`, ...).
    role: String,
    /// Lines the process printed on stdout.
    lines: mpsc::Receiver<String>,
    pub addr: String,
}

impl Process {
    /// Starts `juntos <role> <args>` and waits for its `<wanted> listening on <addr>` line.
    pub fn start(role: &str, args: &[String], wanted: &str) -> Self {
        let mut child = Command::new(juntos_bin())
            .arg(role)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start juntos");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned from here on, so a panic below still kills and reaps the child.
        let mut process = Self {
            child,
            role: role.to_owned(),
            lines,
            addr: String::new(),
        };
        let marker = format!("juntos: {wanted} listening on ");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = process.lines.recv_timeout(left) else {
                panic!("juntos {role} did not report `{marker}` in time");
            };
            if let Some(addr) = line.strip_prefix(&marker) {
                process.addr = addr.trim().to_owned();
                return process;
            }
        }
    }

    /// The operating system's id of the process (for reading `/proc/<pid>/stat`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The role the process was started as (`all`, `otp`, `login`, `chat`, `media`,
    /// `gateway`).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The stdout lines printed since the last call.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Sends SIGTERM and waits for exit; the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for juntos")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What to start.
pub struct SystemBuilder {
    split_roles: bool,
    redis: bool,
    mongodb: bool,
    twilio: bool,
    args: Vec<String>,
    otp_pods: usize,
    login_pods: usize,
    chat_pods: usize,
    gateway_per_chat_pod: bool,
    dns: bool,
    s3: bool,
}

impl Default for SystemBuilder {
    fn default() -> Self {
        Self {
            split_roles: false,
            redis: false,
            mongodb: false,
            twilio: false,
            args: Vec::new(),
            otp_pods: 1,
            login_pods: 1,
            chat_pods: 0,
            gateway_per_chat_pod: false,
            dns: false,
            s3: false,
        }
    }
}

impl SystemBuilder {
    /// Separate `otp`, `login`, `media` and `gateway` processes instead of `juntos all`.
    pub fn split_roles(mut self) -> Self {
        self.split_roles = true;
        self
    }

    /// `n` otp processes behind the gateway (separate roles; give them `with_redis` to share
    /// codes).
    pub fn otp_pods(mut self, n: usize) -> Self {
        self.split_roles = true;
        self.otp_pods = n;
        self
    }

    /// `n` login processes on one data directory (one SQLite file) behind the gateway.
    pub fn login_pods(mut self, n: usize) -> Self {
        self.split_roles = true;
        self.login_pods = n;
        self
    }

    /// `n` chat processes on one data directory behind the gateway (separate roles; without
    /// it they have no chat).
    pub fn chat_pods(mut self, n: usize) -> Self {
        self.split_roles = true;
        self.chat_pods = n;
        self
    }

    /// Besides the gateway in front of every pod, one more gateway per chat pod that routes
    /// chat calls to that pod only ([`System::chat_pod_gateway_url`]), so a test decides which
    /// pod serves which client.
    pub fn gateway_per_chat_pod(mut self) -> Self {
        self.split_roles = true;
        self.gateway_per_chat_pod = true;
        self
    }

    /// The gateway finds each process as `dns:///localhost:PORT` instead of `https://`.
    pub fn dns_endpoints(mut self) -> Self {
        self.split_roles = true;
        self.dns = true;
        self
    }

    /// A real `redis-server` for the otp store and chat's routing.
    pub fn with_redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// SecantusDB (or the server at `JUNTOS_TEST_MONGODB_URI`, in a fresh database) as login's,
    /// chat's and media's store: `--mongodb-uri` for login, every chat pod and media (or
    /// `juntos all`).
    pub fn with_mongodb(mut self) -> Self {
        self.mongodb = true;
        self
    }

    /// A real S3 server (`s3s-fs`) for media blobs instead of `<data-dir>/blobs`.
    pub fn with_s3(mut self) -> Self {
        self.s3 = true;
        self
    }

    /// The fake Twilio as SMS sender.
    pub fn with_twilio(mut self) -> Self {
        self.twilio = true;
        self
    }

    /// Extra flags for the roles that accept them (`--otp-*` go to otp, `--chat-*` to chat,
    /// media's (`--status-*`, `--media-*`, `--s3-*`, `--upload-*`, `--max-*-bytes` but
    /// `--max-message-bytes`, `--max-pending-uploads`) to media, other flags to the gateway;
    /// with `juntos all` all go to the one process).
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_owned());
        self
    }

    /// Starts everything.
    pub async fn start(self) -> System {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock_file = dir.path().join("clock-offset");
        let data_dir = dir.path().join("data");
        let redis = self.redis.then(RedisServer::start);
        let mongodb = self.mongodb.then(MongoTestServer::start);
        let s3 = self.s3.then(S3TestServer::start);
        let mongodb_uri = mongodb
            .as_ref()
            .map(|m| m.uri_with_database(&unique_database("e2e")));
        let twilio = if self.twilio {
            Some(FakeTwilio::start().await)
        } else {
            None
        };

        let mut otp_args = self.common(&clock_file);
        otp_args.extend(["--data-dir".to_owned(), path_arg(&data_dir)]);
        if let Some(redis) = &redis {
            otp_args.extend(["--redis-url".to_owned(), redis.url()]);
        }
        if let Some(twilio) = &twilio {
            otp_args.extend(
                [
                    "--sms",
                    "twilio",
                    "--twilio-base-url",
                    &twilio.base_url(),
                    "--twilio-account-sid",
                    twilio::ACCOUNT_SID,
                    "--twilio-auth-token",
                    twilio::AUTH_TOKEN,
                    "--twilio-from",
                    twilio::FROM,
                    "--twilio-timeout-secs",
                    "2",
                ]
                .map(str::to_owned),
            );
        }
        let (otp_flags, other_flags): (Vec<_>, Vec<_>) = self
            .args
            .chunks(2)
            .map(|c| c.to_vec())
            .partition(|c| c[0].starts_with("--otp-"));
        let (chat_flags, other_flags): (Vec<_>, Vec<_>) = other_flags
            .into_iter()
            .partition(|c| c[0].starts_with("--chat-"));
        let s3_flags: Vec<String> = s3.as_ref().map_or_else(Vec::new, |s3| {
            vec![
                "--s3-bucket".to_owned(),
                s3_server::BUCKET.to_owned(),
                "--s3-endpoint".to_owned(),
                s3.endpoint(),
                "--s3-access-key".to_owned(),
                s3_server::ACCESS_KEY.to_owned(),
                "--s3-secret-key".to_owned(),
                s3_server::SECRET_KEY.to_owned(),
            ]
        });
        let (media_flags, gateway_flags): (Vec<_>, Vec<_>) =
            other_flags.into_iter().partition(|c| is_media_flag(&c[0]));
        let mut chat_pod_gateways = Vec::new();
        let mut chat_pod_gateway_urls = Vec::new();

        let mut processes = Vec::new();
        let mut restart_args = None;
        let internal_tls_dir = dir.path().join("internal-tls");
        let gateway_addr = if self.split_roles {
            // Roles call each other over mutual TLS with certificates `juntos certs` makes.
            let made = Command::new(juntos_bin())
                .args(["certs", "--out", &path_arg(&internal_tls_dir)])
                .stdout(Stdio::null())
                .status()
                .expect("run juntos certs");
            assert!(made.success(), "juntos certs failed");
            let tls = |role: &str| {
                [
                    "--internal-tls-dir".to_owned(),
                    path_arg(&internal_tls_dir.join(role)),
                ]
            };
            otp_args.extend(otp_flags.concat());
            otp_args.extend(tls("otp"));
            let urls = |processes: &[Process], scheme: &str| {
                processes
                    .iter()
                    .map(|p| {
                        let port = p.addr.rsplit_once(':').expect("host:port").1;
                        match scheme {
                            "dns" => format!("dns:///localhost:{port}"),
                            _ => format!("https://{}", p.addr),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let otps: Vec<Process> = (0..self.otp_pods)
                .map(|_| Process::start("otp", &otp_args, "otp"))
                .collect();
            let mut login_args = self.common(&clock_file);
            login_args.extend([
                "--data-dir".to_owned(),
                path_arg(&data_dir),
                "--otp".to_owned(),
                urls(&otps, "https"),
            ]);
            login_args.extend(tls("login"));
            if let Some(uri) = &mongodb_uri {
                login_args.extend(["--mongodb-uri".to_owned(), uri.clone()]);
            }
            let logins: Vec<Process> = (0..self.login_pods)
                .map(|_| Process::start("login", &login_args, "login"))
                .collect();
            let mut chat_args = self.common(&clock_file);
            chat_args.extend([
                "--data-dir".to_owned(),
                path_arg(&data_dir),
                "--login".to_owned(),
                urls(&logins, "https"),
            ]);
            chat_args.extend(tls("chat"));
            if let Some(redis) = &redis {
                chat_args.extend(["--redis-url".to_owned(), redis.url()]);
            }
            if let Some(uri) = &mongodb_uri {
                chat_args.extend(["--mongodb-uri".to_owned(), uri.clone()]);
            }
            chat_args.extend(chat_flags.concat());
            let chats: Vec<Process> = (0..self.chat_pods)
                .map(|_| Process::start("chat", &chat_args, "chat"))
                .collect();
            let mut media_args = self.common(&clock_file);
            media_args.extend([
                "--data-dir".to_owned(),
                path_arg(&data_dir),
                "--login".to_owned(),
                urls(&logins, "https"),
            ]);
            media_args.extend(tls("media"));
            if let Some(uri) = &mongodb_uri {
                media_args.extend(["--mongodb-uri".to_owned(), uri.clone()]);
            }
            media_args.extend(media_flags.concat());
            media_args.extend(s3_flags.iter().cloned());
            let media = Process::start("media", &media_args, "media");
            let scheme = if self.dns { "dns" } else { "https" };
            let mut gateway_args = self.common(&clock_file);
            gateway_args.extend(tls("gateway"));
            gateway_args.extend([
                "--otp".to_owned(),
                urls(&otps, scheme),
                "--login".to_owned(),
                urls(&logins, scheme),
            ]);
            if !chats.is_empty() {
                gateway_args.extend(["--chat".to_owned(), urls(&chats, scheme)]);
            }
            gateway_args.extend([
                "--media".to_owned(),
                urls(std::slice::from_ref(&media), scheme),
            ]);
            gateway_args.extend(gateway_flags.concat());
            if self.gateway_per_chat_pod {
                for chat in &chats {
                    let mut args = gateway_args.clone();
                    let at = args.iter().position(|a| a == "--chat").expect("chat pods") + 1;
                    args[at] = urls(std::slice::from_ref(chat), scheme);
                    let gateway = Process::start("gateway", &args, "gateway");
                    chat_pod_gateway_urls.push(format!("http://{}", gateway.addr));
                    chat_pod_gateways.push(gateway);
                }
            }
            let gateway = Process::start("gateway", &gateway_args, "gateway");
            let addr = gateway.addr.clone();
            processes.extend(otps);
            processes.extend(logins);
            processes.extend(chats);
            processes.push(media);
            processes.append(&mut chat_pod_gateways);
            processes.push(gateway);
            addr
        } else {
            otp_args.extend(self.args.clone());
            otp_args.extend(s3_flags.iter().cloned());
            if let Some(uri) = &mongodb_uri {
                otp_args.extend(["--mongodb-uri".to_owned(), uri.clone()]);
            }
            let all = Process::start("all", &otp_args, "gateway");
            let addr = all.addr.clone();
            processes.push(all);
            // A restart listens where the first run did, so clients keep their server URL.
            let listen = otp_args
                .iter()
                .position(|a| a == "--listen")
                .expect("--listen is set")
                + 1;
            otp_args[listen] = addr.clone();
            restart_args = Some(otp_args);
            addr
        };
        let system = System {
            internal_tls_dir,
            dir,
            data_dir,
            clock_file,
            gateway_url: format!("http://{gateway_addr}"),
            chat_pod_gateway_urls,
            processes,
            restart_args,
            redis,
            mongodb,
            s3,
            twilio,
        };
        system.wait_until_ready().await;
        system
    }

    fn common(&self, clock_file: &Path) -> Vec<String> {
        [
            "--listen",
            "127.0.0.1:0",
            "--test-clock-file",
            &path_arg(clock_file),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// Whether `flag` is one of the media role's.
fn is_media_flag(flag: &str) -> bool {
    [
        "--status-",
        "--media-",
        "--s3-",
        "--upload-",
        "--max-pending-uploads",
    ]
    .iter()
    .any(|p| flag.starts_with(p))
        || (flag.starts_with("--max-") && flag.ends_with("-bytes") && flag != "--max-message-bytes")
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_owned()
}

/// A running system.
pub struct System {
    /// With split roles, what `juntos certs` made: `ca.crt` and `<role>/{tls.crt,tls.key,ca.crt}`.
    internal_tls_dir: PathBuf,
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    clock_file: PathBuf,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub gateway_url: String,
    /// With `gateway_per_chat_pod`, the gateway in front of each chat pod alone.
    chat_pod_gateway_urls: Vec<String>,
    processes: Vec<Process>,
    /// How to start `juntos all` again on the same address and data.
    restart_args: Option<Vec<String>>,
    pub redis: Option<RedisServer>,
    /// With [`SystemBuilder::with_mongodb`]; after `processes`, so it stops after them.
    pub mongodb: Option<MongoTestServer>,
    /// With [`SystemBuilder::with_s3`]; after `processes`, so it stops after them.
    pub s3: Option<S3TestServer>,
    pub twilio: Option<FakeTwilio>,
}

impl System {
    pub fn builder() -> SystemBuilder {
        SystemBuilder::default()
    }

    /// `juntos all` with embedded defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Moves every role's clock forward by `by` (the offset accumulates).
    pub fn advance_clock(&self, by: Duration) {
        let now = std::fs::read_to_string(&self.clock_file)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let next = now + i64::try_from(by.as_millis()).expect("duration fits");
        juntos_clock::OffsetFileClock::set_offset(&self.clock_file, next)
            .expect("write clock offset");
    }

    /// With split roles, the internal certificates the roles use (`juntos certs --out`):
    /// `ca.crt` and one folder per role with `tls.crt`, `tls.key` and `ca.crt`.
    pub fn internal_tls_dir(&self) -> PathBuf {
        assert!(
            self.internal_tls_dir.exists(),
            "internal certificates exist only with split_roles()"
        );
        self.internal_tls_dir.clone()
    }

    /// `127.0.0.1:PORT` of the `index`-th process started as `role`.
    pub fn process_addr(&self, role: &str, index: usize) -> String {
        self.processes
            .iter()
            .filter(|p| p.role == role)
            .nth(index)
            .unwrap_or_else(|| panic!("no {role} process {index}"))
            .addr
            .clone()
    }

    /// The data directory shared by the roles.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `http://127.0.0.1:PORT` of the gateway whose chat calls all go to the `index`-th chat
    /// pod (needs [`SystemBuilder::gateway_per_chat_pod`]).
    pub fn chat_pod_gateway_url(&self, index: usize) -> &str {
        self.chat_pod_gateway_urls
            .get(index)
            .unwrap_or_else(|| panic!("no gateway for chat pod {index}: use gateway_per_chat_pod"))
    }

    /// A raw gRPC channel to `url` (a gateway).
    pub async fn channel_to(url: &str) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(url.to_owned())
            .expect("gateway url")
            .connect()
            .await
            .expect("connect to gateway")
    }

    /// A fresh directory for a client's home.
    pub fn client_home(&self, name: &str) -> PathBuf {
        let home = self.dir.path().join("clients").join(name);
        std::fs::create_dir_all(&home).expect("client home");
        home
    }

    /// A `juntos_client::Client` with its own home, talking to the gateway.
    pub fn client(&self, name: &str) -> std::sync::Arc<juntos_client::Client> {
        let home = self.client_home(name);
        juntos_client::Client::new(self.gateway_url.clone(), path_arg(&home)).expect("client")
    }

    /// A `juntos_client::Client` with its own home whose clock follows the system's test clock
    /// ([`System::advance_clock`] moves both).
    pub fn client_on_test_clock(&self, name: &str) -> std::sync::Arc<juntos_client::Client> {
        let home = self.client_home(name);
        let clock = std::sync::Arc::new(juntos_clock::OffsetFileClock::new(&self.clock_file));
        juntos_client::Client::with_clock(&self.gateway_url, home, clock).expect("client")
    }

    /// A `juntos_client::Client` with its own home, talking to the gateway at `url` (e.g. a
    /// [`System::chat_pod_gateway_url`]).
    pub fn client_at(&self, name: &str, url: &str) -> std::sync::Arc<juntos_client::Client> {
        let home = self.client_home(name);
        juntos_client::Client::new(url.to_owned(), path_arg(&home)).expect("client")
    }

    /// A raw gRPC channel to the gateway.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.gateway_url.clone())
            .expect("gateway url")
            .connect()
            .await
            .expect("connect to gateway")
    }

    /// The console SMS outbox (`<data-dir>/sms-outbox.jsonl`): `(to, body)` per line.
    pub fn sms_outbox(&self) -> Vec<(String, String)> {
        let Ok(text) = std::fs::read_to_string(self.data_dir.join("sms-outbox.jsonl")) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("outbox line is JSON");
                (
                    v["to"].as_str().expect("to").to_owned(),
                    v["body"].as_str().expect("body").to_owned(),
                )
            })
            .collect()
    }

    /// The newest code sent to `phone`, from the console outbox or the fake Twilio.
    pub fn last_code(&self, phone: &str) -> String {
        let bodies: Vec<String> = match &self.twilio {
            Some(t) => t
                .messages()
                .into_iter()
                .filter(|m| m.to == phone)
                .map(|m| m.body)
                .collect(),
            None => self
                .sms_outbox()
                .into_iter()
                .filter(|(to, _)| to == phone)
                .map(|(_, b)| b)
                .collect(),
        };
        let body = bodies
            .last()
            .unwrap_or_else(|| panic!("no SMS was sent to the test number"));
        extract_code(body).expect("the SMS holds a 6-digit code")
    }

    /// Kills `juntos all` with SIGKILL (no chance to flush anything) and starts it again on the
    /// same address and data directory.
    pub async fn kill_and_restart(&mut self) {
        let args = self
            .restart_args
            .clone()
            .expect("kill_and_restart needs `juntos all`");
        let mut old = self.processes.pop().expect("a running process");
        let _ = old.child.kill();
        let _ = old.child.wait();
        drop(old);
        self.processes.push(Process::start("all", &args, "gateway"));
        self.wait_until_ready().await;
    }

    /// The process id of the gateway process; with `juntos all`, of the one process that runs
    /// every role.
    pub fn pid(&self) -> u32 {
        self.processes.last().expect("a running process").pid()
    }

    /// Sends `signal` (`KILL`, `STOP`, ...) to the `index`-th process started as `role`.
    pub fn signal(&self, role: &str, index: usize, signal: &str) {
        let process = self
            .processes
            .iter()
            .filter(|p| p.role == role)
            .nth(index)
            .unwrap_or_else(|| panic!("no {role} process number {index}"));
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &process.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The processes, gateway last.
    pub fn processes(&mut self) -> &mut [Process] {
        &mut self.processes
    }

    /// Waits until the gateway has its token keys (an authenticated call is refused as
    /// UNAUTHENTICATED, not UNAVAILABLE).
    async fn wait_until_ready(&self) {
        use juntos_proto::login::v1::{MeRequest, login_client::LoginClient};
        let mut client = LoginClient::new(self.channel().await);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // A made-up token: the gateway answers UNAVAILABLE until its keys are in, then
        // INVALID_TOKEN (without a token it would answer MISSING_TOKEN at once).
        while std::time::Instant::now() < deadline {
            let request = crate::raw::authed(MeRequest {}, "x");
            match client.me(request).await {
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                _ => return,
            }
        }
        panic!("the gateway never loaded its token keys");
    }
}

/// The first run of exactly six digits in `text`.
pub fn extract_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 6 {
                return Some(text[start..i].to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}
