//! The gateway's allow-list: which gRPC methods are public, where they go, and whether they
//! need an access token. Anything not listed never leaves the gateway.

/// The upstream role a method belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    Otp,
    Login,
    Chat,
    Media,
}

/// What a caller must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (requesting a code, signing in, refreshing).
    Public,
    /// A valid, unrevoked access token.
    Authenticated,
}

/// Whether a failed attempt may be sent again to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Doing it twice is the same as once: retried once on another endpoint when the first
    /// fails to connect or answers UNAVAILABLE before any response (the body is buffered).
    Idempotent,
    /// Never sent twice (streams, and calls with effects such as sending an SMS).
    Never,
}

/// Where a request path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Forward to `upstream` after checking `access`.
    Forward(Upstream, Access, Retry),
    /// Served by the gateway itself (health, reflection).
    Local,
    /// A Juntos method that exists but is internal: PERMISSION_DENIED.
    Internal,
    /// Not a method anyone serves: UNIMPLEMENTED.
    Unknown,
}

/// Public methods, by exact gRPC path. Later issues add their services here.
const PUBLIC: &[(&str, Upstream, Access)] = &[
    (
        "/juntos.otp.v1.Otp/RequestCode",
        Upstream::Otp,
        Access::Public,
    ),
    (
        "/juntos.login.v1.Login/SignIn",
        Upstream::Login,
        Access::Public,
    ),
    (
        "/juntos.login.v1.Login/Refresh",
        Upstream::Login,
        Access::Public,
    ),
    (
        "/juntos.login.v1.Login/SignOut",
        Upstream::Login,
        Access::Authenticated,
    ),
    (
        "/juntos.login.v1.Login/Me",
        Upstream::Login,
        Access::Authenticated,
    ),
    (
        "/juntos.login.v1.Login/GetSettings",
        Upstream::Login,
        Access::Authenticated,
    ),
    (
        "/juntos.login.v1.Login/UpdateSettings",
        Upstream::Login,
        Access::Authenticated,
    ),
];

/// Public services whose every method is routed, by `/<package>.<Service>/` prefix.
const PUBLIC_SERVICES: &[(&str, Upstream, Access)] = &[
    (
        "/juntos.login.v1.Directory/",
        Upstream::Login,
        Access::Authenticated,
    ),
    (
        "/juntos.chat.v1.Chat/",
        Upstream::Chat,
        Access::Authenticated,
    ),
    (
        "/juntos.chat.v1.Groups/",
        Upstream::Chat,
        Access::Authenticated,
    ),
    (
        "/juntos.media.v1.Statuses/",
        Upstream::Media,
        Access::Authenticated,
    ),
    (
        "/juntos.media.v1.Media/",
        Upstream::Media,
        Access::Authenticated,
    ),
];

/// Services the gateway answers itself.
const LOCAL_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Methods that may be retried on another endpoint, by exact gRPC path. Not here, on purpose:
/// `Otp.RequestCode` (sends an SMS), `Login.SignIn` (consumes the code), `Login.Refresh`
/// (rotates the refresh token), `Login.SignOut`, `Directory.UploadPrekeys`,
/// `Directory.FetchBundles` (hands out one-time prekeys), `Chat.Connect` (a stream),
/// `Groups.CreateGroup` (would make a second group), and `Groups.LeaveGroup` and
/// `Statuses.DeleteStatus` (a second try of one that went through answers NOT_A_MEMBER or
/// NOT_FOUND), `Media.CreateUpload` (would start a second upload), `Media.AbortUpload` (a second
/// try answers NOT_FOUND), and the client streams
/// `Media.Upload` and `Media.SetProfilePhoto` (a retry would buffer the whole body).
const IDEMPOTENT: &[&str] = &[
    "/juntos.login.v1.Login/Me",
    "/juntos.login.v1.Login/GetSettings",
    // Sets fields to given values: the same however often it happens.
    "/juntos.login.v1.Login/UpdateSettings",
    "/juntos.login.v1.Directory/ListDevices",
    "/juntos.login.v1.Directory/GetProfiles",
    "/juntos.login.v1.Directory/PrekeyStatus",
    // Records contacts, which is the same however often it happens.
    "/juntos.login.v1.Directory/ResolvePhones",
    "/juntos.chat.v1.Chat/Sync",
    "/juntos.chat.v1.Chat/Ack",
    "/juntos.chat.v1.Chat/GetPresence",
    // A retried client_msg_id gets the first answer and stores nothing twice.
    "/juntos.chat.v1.Chat/Send",
    "/juntos.chat.v1.Groups/SendGroup",
    "/juntos.chat.v1.Groups/GetGroup",
    "/juntos.chat.v1.Groups/ListGroups",
    "/juntos.chat.v1.Groups/GetNoticeKeys",
    // Set the group to a state: a second time changes nothing (and sends no second notice).
    "/juntos.chat.v1.Groups/AddMembers",
    "/juntos.chat.v1.Groups/RemoveMembers",
    "/juntos.chat.v1.Groups/SetAdmins",
    "/juntos.chat.v1.Groups/RenameGroup",
    // A retried client_status_id gets the first status and stores nothing twice.
    "/juntos.media.v1.Statuses/PostStatus",
    "/juntos.media.v1.Statuses/ListStatuses",
    "/juntos.media.v1.Media/GetUpload",
    // Completing a complete upload answers the same.
    "/juntos.media.v1.Media/CompleteUpload",
    "/juntos.media.v1.Media/Download",
    "/juntos.media.v1.Media/GetDownloadUrl",
    "/juntos.media.v1.Media/GetProfilePhoto",
    // Removing what is already gone is no error.
    "/juntos.media.v1.Media/DeleteProfilePhoto",
];

/// Streams that live as long as the device is online; they end when the access token they were
/// opened with expires, unless the session has shown the gateway a newer one. Other calls end
/// only when their session is revoked (an upload may outlast a token).
const LIVE_STREAMS: &[&str] = &["/juntos.chat.v1.Chat/Connect"];

/// Whether `path` is a [`LIVE_STREAMS`] method.
pub fn is_live_stream(path: &str) -> bool {
    LIVE_STREAMS.contains(&path)
}

fn retry(path: &str) -> Retry {
    if IDEMPOTENT.contains(&path) {
        Retry::Idempotent
    } else {
        Retry::Never
    }
}

/// Looks up a request path.
pub fn route(path: &str) -> Route {
    if let Some((_, upstream, access)) = PUBLIC.iter().find(|(p, _, _)| *p == path) {
        return Route::Forward(*upstream, *access, retry(path));
    }
    let service = PUBLIC_SERVICES.iter().find(|(prefix, _, _)| {
        // Exactly one method name after the prefix.
        path.strip_prefix(prefix)
            .is_some_and(|method| !method.is_empty() && !method.contains('/'))
    });
    if let Some((_, upstream, access)) = service {
        return Route::Forward(*upstream, *access, retry(path));
    }
    if LOCAL_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Route::Local;
    }
    if path.starts_with("/juntos.") {
        return Route::Internal;
    }
    Route::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_methods_are_not_routed() {
        assert_eq!(route("/juntos.otp.v1.Otp/VerifyCode"), Route::Internal);
        assert_eq!(
            route("/juntos.login.v1.LoginInternal/ListRevocations"),
            Route::Internal
        );
        assert_eq!(
            route("/juntos.login.v1.LoginInternal/GetVerificationKeys"),
            Route::Internal
        );
        assert_eq!(route("/juntos.otp.v1.Otp/RequestCode/"), Route::Internal);
        assert_eq!(route("/other.Service/Method"), Route::Unknown);
    }

    #[test]
    fn public_methods_route_with_their_access() {
        assert_eq!(
            route("/juntos.otp.v1.Otp/RequestCode"),
            Route::Forward(Upstream::Otp, Access::Public, Retry::Never)
        );
        assert_eq!(
            route("/juntos.login.v1.Login/Me"),
            Route::Forward(Upstream::Login, Access::Authenticated, Retry::Idempotent)
        );
        assert_eq!(route("/grpc.health.v1.Health/Check"), Route::Local);
    }

    #[test]
    fn only_calls_without_repeated_effects_are_retried() {
        for path in [
            "/juntos.otp.v1.Otp/RequestCode",
            "/juntos.login.v1.Login/SignIn",
            "/juntos.login.v1.Login/Refresh",
            "/juntos.login.v1.Login/SignOut",
            "/juntos.login.v1.Directory/UploadPrekeys",
        ] {
            assert!(
                matches!(route(path), Route::Forward(_, _, Retry::Never)),
                "{path}"
            );
        }
        for path in IDEMPOTENT {
            assert!(
                matches!(route(path), Route::Forward(_, _, Retry::Idempotent)),
                "{path} is routed"
            );
        }
    }

    #[test]
    fn whole_services_route_every_method_with_a_token() {
        for (path, retry) in [
            ("/juntos.chat.v1.Chat/Send", Retry::Idempotent),
            ("/juntos.chat.v1.Chat/Connect", Retry::Never),
            ("/juntos.chat.v1.Chat/Sync", Retry::Idempotent),
            ("/juntos.chat.v1.Chat/Ack", Retry::Idempotent),
            ("/juntos.chat.v1.Groups/CreateGroup", Retry::Never),
            ("/juntos.chat.v1.Groups/LeaveGroup", Retry::Never),
            ("/juntos.chat.v1.Groups/SendGroup", Retry::Idempotent),
        ] {
            assert_eq!(
                route(path),
                Route::Forward(Upstream::Chat, Access::Authenticated, retry),
                "{path}"
            );
        }
        for (path, retry) in [
            ("/juntos.media.v1.Statuses/PostStatus", Retry::Idempotent),
            ("/juntos.media.v1.Statuses/ListStatuses", Retry::Idempotent),
            // A second try of a delete that went through would answer NOT_FOUND.
            ("/juntos.media.v1.Statuses/DeleteStatus", Retry::Never),
            // A method a later version adds reaches media too (and is not retried).
            ("/juntos.media.v1.Statuses/Other", Retry::Never),
            ("/juntos.media.v1.Media/Download", Retry::Idempotent),
            ("/juntos.media.v1.Media/GetUpload", Retry::Idempotent),
            // Client streams are never buffered for a retry.
            ("/juntos.media.v1.Media/Upload", Retry::Never),
            ("/juntos.media.v1.Media/SetProfilePhoto", Retry::Never),
            ("/juntos.media.v1.Media/CreateUpload", Retry::Never),
        ] {
            assert_eq!(
                route(path),
                Route::Forward(Upstream::Media, Access::Authenticated, retry),
                "{path}"
            );
        }
        assert_eq!(route("/juntos.media.v1.Statuses/"), Route::Internal);
        assert_eq!(
            route("/juntos.media.v1.StatusesInternal/PostStatus"),
            Route::Internal
        );
        assert_eq!(
            route("/juntos.login.v1.Directory/FetchBundles"),
            Route::Forward(Upstream::Login, Access::Authenticated, Retry::Never)
        );
        // The prefix alone, a nested path, or a longer service name are not methods.
        assert_eq!(route("/juntos.chat.v1.Chat/"), Route::Internal);
        assert_eq!(route("/juntos.chat.v1.Chat/Send/x"), Route::Internal);
        assert_eq!(route("/juntos.chat.v1.ChatInternal/Send"), Route::Internal);
        assert_eq!(
            route("/juntos.login.v1.LoginInternal/ActiveDevices"),
            Route::Internal
        );
    }
}
