//! The gateway relays every upstream status exactly, as a standard gRPC client sees it.
//!
//! Tonic clients cope with answers that other gRPC stacks refuse, so this test speaks through
//! grpcio (the C core behind grpc-python, the same wire behaviour as grpc-java, grpc-swift and
//! Envoy), driven by `tests/python/grpc_probe.py` in the workspace's `.venv` (scripts/test.sh
//! installs it). Every error class the services produce is asked twice, once through the gateway
//! (with an access token) and once of the role directly (with the gateway's client certificate
//! and the identity headers the gateway would set), and the two answers must agree: code,
//! message, `grpc-status-details-bin` (ErrorInfo, RetryInfo), trailers and any response
//! messages. The cases cover unary, server-streaming and client-streaming calls, trailers-only
//! answers and a stream that ends with OK after its messages.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use juntos_proto::chat::v1::groups_client::GroupsClient;
use juntos_proto::chat::v1::{
    CreateGroupRequest, OutgoingEnvelope, RenameGroupRequest, SendRequest,
};
use juntos_proto::login::v1::{FetchBundlesRequest, RefreshRequest, SignInResponse};
use juntos_proto::media::v1::media_client::MediaClient;
use juntos_proto::media::v1::{CreateUploadRequest, DownloadRequest, MediaKind, UploadRequest};
use juntos_proto::otp::v1::RequestCodeRequest;
use juntos_tests::raw::{self, authed};
use juntos_tests::{ALICE, BOB, CAROL, System};
use serde_json::{Value, json};
use tonic_prost::prost::Message;
use tonic_types::StatusExt as _;

/// How far the RetryInfo delays of the two calls of a case may differ (they are asked a moment
/// apart, and the services round waits up to whole seconds).
const RETRY_TOLERANCE: Duration = Duration::from_secs(2);

/// A blob id no upload has (well formed, so the services look it up).
const UNKNOWN_BLOB: &str = "m-00000000000000000000000000000000";

// === the probe ===============================================================================

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// The workspace venv's Python with grpcio; fails (never skips) when it is not there.
fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which creates .venv and installs grpcio into it",
        python.display()
    );
    let check = Command::new(&python)
        .args(["-c", "import grpc"])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        check.status.success(),
        "grpcio is not installed in {}: run scripts/test.sh, which installs it into .venv ({})",
        python.display(),
        String::from_utf8_lossy(&check.stderr).trim()
    );
    python
}

/// How a call sends its messages.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Unary,
    ServerStream,
    ClientStream,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ServerStream => "server_stream",
            Self::ClientStream => "client_stream",
        }
    }
}

/// What grpcio saw of one call.
#[derive(Debug, Clone, serde::Deserialize)]
struct Outcome {
    code: String,
    message: Option<String>,
    details_bin: Option<String>,
    initial: Vec<(String, String)>,
    trailing: Vec<(String, String)>,
    responses: Vec<String>,
    debug: Option<String>,
}

/// Runs the calls (JSON as `grpc_probe.py` reads them) with grpcio, in order.
async fn probe(calls: Vec<Value>) -> Vec<Outcome> {
    let python = venv_python();
    let script = workspace_root().join("tests/python/grpc_probe.py");
    let count = calls.len();
    let input = serde_json::to_vec(&json!({ "calls": calls })).expect("json");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(&input)
            .expect("write the calls");
        child.wait_with_output().expect("wait for the probe")
    })
    .await
    .expect("probe task");
    assert!(
        output.status.success(),
        "grpc_probe.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    #[derive(serde::Deserialize)]
    struct Results {
        results: Vec<Outcome>,
    }
    let results: Results = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "grpc_probe.py printed no results ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(results.results.len(), count, "one result per call");
    results.results
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The gRPC code number of a code name as grpcio spells it.
fn code_number(name: &str) -> Option<i32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| i32::try_from(i).ok())
}

// === who calls, and where ====================================================================

/// A signed-in device: its token for the gateway, its identity for direct calls.
struct Device {
    user_id: String,
    device_id: String,
    session_id: String,
    access_token: String,
    refresh_token: String,
}

impl Device {
    fn from_sign_in(signed: SignInResponse) -> Self {
        let tokens = signed.tokens.expect("tokens");
        let claims = token_claims(&tokens.access_token);
        assert_eq!(claims["sub"], signed.user_id.as_str());
        assert_eq!(claims["dev"], signed.device_id.as_str());
        Self {
            session_id: claims["sid"].as_str().expect("sid claim").to_owned(),
            user_id: signed.user_id,
            device_id: signed.device_id,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        }
    }
}

/// The claims of a PASETO v4.public token, unverified: `v4.public.` then base64url of the JSON
/// claims followed by the 64-byte signature (then `.` and the footer).
fn token_claims(token: &str) -> Value {
    let body = token.strip_prefix("v4.public.").expect("a v4.public token");
    let payload = body.split('.').next().expect("payload");
    let raw = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    assert!(raw.len() > 64, "payload and signature");
    serde_json::from_slice(&raw[..raw.len() - 64]).expect("JSON claims")
}

/// Where the calls go: the gateway (plaintext on loopback, like any app) and each role's
/// listener (mutual TLS with the gateway's certificate).
struct Targets {
    gateway: String,
    roles: HashMap<&'static str, String>,
    tls_dir: PathBuf,
}

impl Targets {
    fn of(sys: &System) -> Self {
        let gateway = sys
            .gateway_url
            .strip_prefix("http://")
            .expect("the gateway serves plaintext on loopback")
            .to_owned();
        let roles = ["otp", "login", "chat", "media"]
            .into_iter()
            .map(|role| (role, sys.process_addr(role, 0)))
            .collect();
        Self {
            gateway,
            roles,
            tls_dir: sys.internal_tls_dir(),
        }
    }

    /// A call through the gateway, as an app makes it.
    fn via_gateway(&self, case: &Case<'_>) -> Value {
        let mut metadata = Vec::new();
        if let Some(caller) = case.caller {
            metadata.push(json!([
                "authorization",
                format!("Bearer {}", caller.access_token)
            ]));
        }
        json!({
            "target": self.gateway,
            "tls": null,
            "path": case.path,
            "kind": case.kind.name(),
            "requests": case.gateway_requests.iter().map(|r| to_hex(r)).collect::<Vec<_>>(),
            "metadata": metadata,
            "timeout": 10,
        })
    }

    /// The same call made to the role directly, as the gateway makes it.
    fn direct(&self, case: &Case<'_>) -> Value {
        let mut metadata = vec![json!(["x-juntos-client-ip", "127.0.0.1"])];
        if let Some(caller) = case.caller {
            metadata.push(json!(["x-juntos-user-id", caller.user_id]));
            metadata.push(json!(["x-juntos-device-id", caller.device_id]));
            metadata.push(json!(["x-juntos-session-id", caller.session_id]));
        }
        let path = |p: &str| self.tls_dir.join(p).to_str().expect("utf-8").to_owned();
        json!({
            "target": self.roles[case.role],
            "tls": {
                "ca": path("ca.crt"),
                "cert": path("gateway/tls.crt"),
                "key": path("gateway/tls.key"),
                "server_name": format!("{}.juntos.internal", case.role),
            },
            "path": case.path,
            "kind": case.kind.name(),
            "requests": case.direct_requests.iter().map(|r| to_hex(r)).collect::<Vec<_>>(),
            "metadata": metadata,
            "timeout": 10,
        })
    }
}

// === the cases ===============================================================================

/// One call asked through the gateway and of its role directly.
struct Case<'a> {
    name: &'static str,
    role: &'static str,
    path: &'static str,
    kind: Kind,
    /// The request messages through the gateway and directly: the same, unless each call needs
    /// an object of its own.
    gateway_requests: Vec<Vec<u8>>,
    direct_requests: Vec<Vec<u8>>,
    /// `None` for the public methods.
    caller: Option<&'a Device>,
    /// The code both answers must have, and the ErrorInfo reason (none for OK).
    code: &'static str,
    reason: Option<&'static str>,
}

impl<'a> Case<'a> {
    /// `path` of the `role`, by `caller`, with the same `requests` both ways; it answers OK
    /// unless [`Case::answers`] says otherwise.
    fn new(
        name: &'static str,
        (role, path): (&'static str, &'static str),
        kind: Kind,
        caller: Option<&'a Device>,
        requests: Vec<Vec<u8>>,
    ) -> Self {
        Self {
            name,
            role,
            path,
            kind,
            gateway_requests: requests.clone(),
            direct_requests: requests,
            caller,
            code: "OK",
            reason: None,
        }
    }

    /// The code and ErrorInfo reason the service answers with.
    fn answers(mut self, code: &'static str, reason: &'static str) -> Self {
        self.code = code;
        self.reason = Some(reason);
        self
    }
}

/// The parts of `grpc-status-details-bin` that must agree.
#[derive(Debug, PartialEq)]
struct Details {
    /// `google.rpc.Status.code` and `.message`.
    code: i32,
    message: String,
    /// ErrorInfo: reason, domain, metadata (sorted).
    error_info: Option<(String, String, BTreeMap<String, String>)>,
    /// Every detail's type URL, in order.
    types: Vec<String>,
}

/// Decodes `grpc-status-details-bin` (a `google.rpc.Status`): the comparable parts and the
/// RetryInfo delay.
fn details_of(hex: &str) -> Result<(Details, Option<Duration>), String> {
    let bytes = from_hex(hex);
    let status = tonic_types::pb::Status::decode(bytes.as_slice())
        .map_err(|e| format!("grpc-status-details-bin is no google.rpc.Status: {e}"))?;
    let tonic = tonic::Status::with_details(
        tonic::Code::from_i32(status.code),
        status.message.clone(),
        bytes::Bytes::from(bytes),
    );
    let details = tonic.get_error_details();
    let error_info = details.error_info().map(|i| {
        (
            i.reason.clone(),
            i.domain.clone(),
            i.metadata.clone().into_iter().collect(),
        )
    });
    let retry = details.retry_info().and_then(|r| r.retry_delay);
    Ok((
        Details {
            code: status.code,
            message: status.message,
            error_info,
            types: status.details.into_iter().map(|d| d.type_url).collect(),
        },
        retry,
    ))
}

/// Trailing metadata that must agree: all of it but `date` (each hop's own clock) and the
/// details, which are compared decoded.
fn comparable_trailers(outcome: &Outcome) -> Vec<(String, String)> {
    let mut trailers: Vec<(String, String)> = outcome
        .trailing
        .iter()
        .filter(|(k, _)| k != "date" && k != "grpc-status-details-bin")
        .cloned()
        .collect();
    trailers.sort();
    trailers
}

/// What is wrong with the pair of answers to `case`; empty when they agree as they should.
fn check(case: &Case<'_>, gateway: &Outcome, direct: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(format!("{}: {text}", case.name));

    // The direct answer is the reference: if it is not what the case expects, the test (or
    // the service) is wrong, not the gateway.
    if direct.code != case.code {
        problem(format!(
            "the {} role answered {} {:?} directly, expected {} (debug: {:?})",
            case.role, direct.code, direct.message, case.code, direct.debug
        ));
        return problems;
    }
    if gateway.code != direct.code {
        let keys = |m: &[(String, String)]| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        problem(format!(
            "through the gateway {} {:?}, directly {} {:?} (grpcio: {:?}; through the gateway \
             headers {:?}, trailers {:?})",
            gateway.code,
            gateway.message,
            direct.code,
            direct.message,
            gateway.debug,
            keys(&gateway.initial),
            keys(&gateway.trailing)
        ));
        return problems;
    }
    if gateway.message != direct.message {
        problem(format!(
            "message through the gateway {:?}, directly {:?}",
            gateway.message, direct.message
        ));
    }
    match (&gateway.details_bin, &direct.details_bin) {
        (None, None) if case.reason.is_none() => {}
        (None, None) => problem("no grpc-status-details-bin trailer either way".to_owned()),
        (Some(_), None) => problem("details through the gateway only".to_owned()),
        (None, Some(_)) => problem(format!(
            "no grpc-status-details-bin through the gateway (initial metadata: {:?})",
            gateway.initial
        )),
        (Some(g), Some(d)) => match (details_of(g), details_of(d)) {
            (Ok((g, g_retry)), Ok((d, d_retry))) => {
                let reason = d.error_info.as_ref().map(|i| i.0.as_str());
                if reason != case.reason {
                    problem(format!(
                        "direct ErrorInfo reason {reason:?}, expected {:?}",
                        case.reason
                    ));
                }
                if Some(d.code) != code_number(&direct.code)
                    || Some(d.message.as_str()) != direct.message.as_deref()
                {
                    problem(format!(
                        "direct details say {} {:?}, the status {} {:?}",
                        d.code, d.message, direct.code, direct.message
                    ));
                }
                if g != d {
                    problem(format!("details through the gateway {g:?}, directly {d:?}"));
                }
                match (g_retry, d_retry) {
                    (None, None) => {}
                    (Some(g), Some(d)) => {
                        if g.abs_diff(d) > RETRY_TOLERANCE {
                            problem(format!(
                                "RetryInfo through the gateway {g:?}, directly {d:?}"
                            ));
                        }
                    }
                    (g, d) => problem(format!(
                        "RetryInfo through the gateway {g:?}, directly {d:?}"
                    )),
                }
                if case.code == "RESOURCE_EXHAUSTED" && d_retry.is_none() {
                    problem("RESOURCE_EXHAUSTED without RetryInfo".to_owned());
                }
            }
            (Err(e), _) => problem(format!("through the gateway: {e}")),
            (_, Err(e)) => problem(format!("directly: {e}")),
        },
    }
    let (g_trailers, d_trailers) = (comparable_trailers(gateway), comparable_trailers(direct));
    if g_trailers != d_trailers {
        problem(format!(
            "trailers through the gateway {g_trailers:?}, directly {d_trailers:?}"
        ));
    }
    if case.code == "OK" && direct.responses.is_empty() {
        problem("the direct call streamed no messages".to_owned());
    }
    if gateway.responses != direct.responses {
        problem(format!(
            "{} response messages through the gateway, {} directly (or different bytes)",
            gateway.responses.len(),
            direct.responses.len()
        ));
    }
    problems
}

// === the test ================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_relays_every_status_as_a_standard_client_sees_it() {
    // Fail at once, before starting anything, when the probe cannot run.
    venv_python();
    let sys = System::builder().split_roles().chat_pods(1).start().await;
    let targets = Targets::of(&sys);
    let channel = sys.channel().await;
    let alice = Device::from_sign_in(raw::sign_in(&sys, &channel, ALICE, "alice").await);
    let bob = Device::from_sign_in(raw::sign_in(&sys, &channel, BOB, "bob").await);
    assert!(!alice.refresh_token.is_empty());

    // A code for Carol, so the next ones are RESEND_TOO_SOON (asked through both paths
    // back to back, so both see the same wait).
    raw::request_code(&channel, CAROL)
        .await
        .expect("carol's first code");

    // A group of Alice's that Bob is a plain member of.
    let group = GroupsClient::new(channel.clone())
        .create_group(authed(
            CreateGroupRequest {
                name: "Relay".to_owned(),
                member_user_ids: vec![bob.user_id.clone()],
            },
            &alice.access_token,
        ))
        .await
        .expect("create the group")
        .into_inner()
        .group
        .expect("group");

    // A complete blob of Alice's, and three unfinished uploads of hers: one to resume at the
    // wrong offset, and one per path to overfill.
    let mut media = MediaClient::new(channel.clone());
    let create = |size: u64| {
        authed(
            CreateUploadRequest {
                kind: MediaKind::File as i32,
                size,
                direct: false,
            },
            &alice.access_token,
        )
    };
    let blob = media
        .create_upload(create(3000))
        .await
        .expect("create the blob")
        .into_inner();
    let content: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let uploaded = media
        .upload(authed(
            tokio_stream::iter([UploadRequest {
                blob_id: blob.blob_id.clone(),
                offset: 0,
                data: content,
            }]),
            &alice.access_token,
        ))
        .await
        .expect("upload the blob")
        .into_inner();
    assert!(uploaded.complete);
    let unfinished = media
        .create_upload(create(1000))
        .await
        .expect("create an upload")
        .into_inner();
    let mut overfill = Vec::new();
    for _ in 0..2 {
        let upload = media
            .create_upload(create(100))
            .await
            .expect("create an upload")
            .into_inner();
        overfill.push(
            (0..3)
                .map(|i| {
                    UploadRequest {
                        blob_id: if i == 0 {
                            upload.blob_id.clone()
                        } else {
                            String::new()
                        },
                        offset: 0,
                        data: vec![7; 64 * 1024],
                    }
                    .encode_to_vec()
                })
                .collect::<Vec<_>>(),
        );
    }

    let mut cases = vec![
        // INVALID_ARGUMENT, unary, trailers-only.
        Case::new(
            "invalid phone",
            ("otp", "/juntos.otp.v1.Otp/RequestCode"),
            Kind::Unary,
            None,
            vec![
                RequestCodeRequest {
                    phone: "abc".to_owned(),
                }
                .encode_to_vec(),
            ],
        )
        .answers("INVALID_ARGUMENT", "INVALID_PHONE"),
        // RESOURCE_EXHAUSTED with RetryInfo.
        Case::new(
            "resend too soon",
            ("otp", "/juntos.otp.v1.Otp/RequestCode"),
            Kind::Unary,
            None,
            vec![
                RequestCodeRequest {
                    phone: CAROL.to_owned(),
                }
                .encode_to_vec(),
            ],
        )
        .answers("RESOURCE_EXHAUSTED", "RESEND_TOO_SOON"),
        // UNAUTHENTICATED from the service (not the gateway's own token check).
        Case::new(
            "bogus refresh token",
            ("login", "/juntos.login.v1.Login/Refresh"),
            Kind::Unary,
            None,
            vec![
                RefreshRequest {
                    refresh_token: "not-a-refresh-token".to_owned(),
                }
                .encode_to_vec(),
            ],
        )
        .answers("UNAUTHENTICATED", "INVALID_REFRESH_TOKEN"),
        // NOT_FOUND from login, chat and media (server streaming, client streaming).
        Case::new(
            "bundles of an unknown user",
            ("login", "/juntos.login.v1.Directory/FetchBundles"),
            Kind::Unary,
            Some(&alice),
            vec![
                FetchBundlesRequest {
                    user_id: "u-nobody".to_owned(),
                }
                .encode_to_vec(),
            ],
        )
        .answers("NOT_FOUND", "NO_SUCH_USER"),
        Case::new(
            "send to an unknown user",
            ("chat", "/juntos.chat.v1.Chat/Send"),
            Kind::Unary,
            Some(&alice),
            vec![
                SendRequest {
                    client_msg_id: "relay-unknown-user".to_owned(),
                    envelopes: vec![OutgoingEnvelope {
                        recipient_user_id: "u-nobody".to_owned(),
                        recipient_device_id: "d-nothing".to_owned(),
                        ciphertext: vec![1; 16],
                    }],
                }
                .encode_to_vec(),
            ],
        )
        .answers("NOT_FOUND", "NO_SUCH_USER"),
        Case::new(
            "download of an unknown blob",
            ("media", "/juntos.media.v1.Media/Download"),
            Kind::ServerStream,
            Some(&alice),
            vec![
                DownloadRequest {
                    blob_id: UNKNOWN_BLOB.to_owned(),
                    capability: vec![0; 32],
                    offset: 0,
                }
                .encode_to_vec(),
            ],
        )
        .answers("NOT_FOUND", "NO_SUCH_BLOB"),
        Case::new(
            "upload to an unknown upload",
            ("media", "/juntos.media.v1.Media/Upload"),
            Kind::ClientStream,
            Some(&alice),
            vec![
                UploadRequest {
                    blob_id: UNKNOWN_BLOB.to_owned(),
                    offset: 0,
                    data: vec![1, 2, 3],
                }
                .encode_to_vec(),
            ],
        )
        .answers("NOT_FOUND", "NO_SUCH_BLOB"),
        // PERMISSION_DENIED: a group change by a plain member; a download without the
        // capability (server streaming).
        Case::new(
            "rename by a non-admin",
            ("chat", "/juntos.chat.v1.Groups/RenameGroup"),
            Kind::Unary,
            Some(&bob),
            vec![
                RenameGroupRequest {
                    group_id: group.group_id.clone(),
                    name: "Bob's now".to_owned(),
                }
                .encode_to_vec(),
            ],
        )
        .answers("PERMISSION_DENIED", "NOT_AN_ADMIN"),
        Case::new(
            "download without the capability",
            ("media", "/juntos.media.v1.Media/Download"),
            Kind::ServerStream,
            Some(&bob),
            vec![
                DownloadRequest {
                    blob_id: blob.blob_id.clone(),
                    capability: vec![0; 32],
                    offset: 0,
                }
                .encode_to_vec(),
            ],
        )
        .answers("PERMISSION_DENIED", "NO_CAPABILITY"),
        // FAILED_PRECONDITION: envelopes that miss the recipient's device (ErrorInfo metadata
        // lists Bob's devices); an upload resumed at the wrong offset (client streaming).
        Case::new(
            "send with stale devices",
            ("chat", "/juntos.chat.v1.Chat/Send"),
            Kind::Unary,
            Some(&alice),
            vec![
                SendRequest {
                    client_msg_id: "relay-stale-devices".to_owned(),
                    envelopes: vec![OutgoingEnvelope {
                        recipient_user_id: bob.user_id.clone(),
                        recipient_device_id: "d-not-bobs".to_owned(),
                        ciphertext: vec![1; 16],
                    }],
                }
                .encode_to_vec(),
            ],
        )
        .answers("FAILED_PRECONDITION", "STALE_DEVICES"),
        Case::new(
            "upload at the wrong offset",
            ("media", "/juntos.media.v1.Media/Upload"),
            Kind::ClientStream,
            Some(&alice),
            vec![
                UploadRequest {
                    blob_id: unfinished.blob_id.clone(),
                    offset: 500,
                    data: vec![1; 10],
                }
                .encode_to_vec(),
            ],
        )
        .answers("FAILED_PRECONDITION", "UPLOAD_OFFSET"),
        // OK after streamed messages: the blob itself, with its trailers.
        Case::new(
            "download of a blob",
            ("media", "/juntos.media.v1.Media/Download"),
            Kind::ServerStream,
            Some(&alice),
            vec![
                DownloadRequest {
                    blob_id: blob.blob_id.clone(),
                    capability: blob.capability.clone(),
                    offset: 0,
                }
                .encode_to_vec(),
            ],
        ),
    ];
    // INVALID_ARGUMENT while the client is still sending: each path overfills its own upload.
    let mut overfilled = Case::new(
        "an upload past its declared size",
        ("media", "/juntos.media.v1.Media/Upload"),
        Kind::ClientStream,
        Some(&alice),
        Vec::new(),
    )
    .answers("INVALID_ARGUMENT", "MEDIA_TOO_LARGE");
    overfilled.direct_requests = overfill.pop().expect("two uploads");
    overfilled.gateway_requests = overfill.pop().expect("two uploads");
    cases.push(overfilled);

    // Each case through the gateway, then at once directly.
    let calls = cases
        .iter()
        .flat_map(|case| [targets.via_gateway(case), targets.direct(case)])
        .collect();
    let outcomes = probe(calls).await;

    let mut problems = Vec::new();
    let mut report = Vec::new();
    let mut trailers_only = 0;
    for (case, pair) in cases.iter().zip(outcomes.chunks(2)) {
        let (gateway, direct) = (&pair[0], &pair[1]);
        report.push(format!(
            "{:<34} {:<20} gateway {:<20} direct {}",
            case.name, case.code, gateway.code, direct.code
        ));
        if direct.code != "OK" && direct.initial.is_empty() {
            trailers_only += 1;
        }
        problems.extend(check(case, gateway, direct));
    }
    println!("{}", report.join("\n"));
    assert!(
        problems.is_empty(),
        "the gateway did not relay these answers as the services gave them:\n  {}\n\n{}",
        problems.join("\n  "),
        report.join("\n")
    );
    assert!(
        trailers_only > 0,
        "no case was answered trailers-only directly, so none checks that the gateway relays such \
         answers"
    );

    // The STALE_DEVICES details name Bob's one device.
    let stale = cases
        .iter()
        .position(|c| c.name == "send with stale devices")
        .expect("case");
    let (details, _) =
        details_of(outcomes[stale * 2].details_bin.as_deref().expect("details")).expect("details");
    let metadata = details.error_info.expect("ErrorInfo").2;
    assert_eq!(
        metadata.get(&bob.user_id).map(String::as_str),
        Some(bob.device_id.as_str())
    );
}
