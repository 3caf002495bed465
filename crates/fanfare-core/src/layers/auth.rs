//! Caller authentication and permissions: every call except health checks must carry
//! `authorization: Bearer <token>` naming a known caller ([`crate::callers`]), may only reach
//! the methods that caller is allowed, and may only act for an end user
//! (`x-fanfare-user-id`) when the caller is allowed to. A missing or unknown token is
//! answered UNAUTHENTICATED, anything else refused PERMISSION_DENIED. Reflection needs a
//! token too, so `grpcurl` callers pass `-H 'authorization: Bearer …'`.
//!
//! The caller rides on the request (handlers read it with [`Caller::of`]), is recorded on the
//! `grpc_request` span, and labels the call's metrics.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use subtle::ConstantTimeEq;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::{ResponseFuture, is_health_check};
use crate::callers::{ANONYMOUS_CALLER, Caller, Callers, SHARED_TOKEN_CALLER};
use crate::config::ServerConfig;
use crate::identity::USER_ID_HEADER;
use crate::status::{self, ErrorReason, Reason};
use crate::tls::PeerIdentity;

/// The metadata key that carries the caller's token.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// The caller of a finished call, left in the response extensions for the metrics layer.
#[derive(Debug, Clone)]
pub struct CallerLabel(pub Arc<str>);

/// Marks a response the auth layer answered itself: the call never reached its method.
#[derive(Debug, Clone, Copy)]
pub struct RefusedByAuth;

/// What the layer accepts.
#[derive(Clone)]
enum Policy {
    /// Every call, with or without a token (local development), as one anonymous caller.
    AllowAll(Arc<Caller>),
    /// Calls carrying the one shared token, compared in constant time.
    SharedToken(Arc<[u8]>, Arc<Caller>),
    /// Calls carrying the token of a caller in the callers file.
    Callers(Arc<Callers>),
    /// Nothing but health checks: the configuration named no caller and did not allow
    /// unauthenticated calls, so fail closed.
    RejectAll,
}

/// Identifies the caller of every call except `grpc.health.v1.Health` and checks what it may
/// do.
#[derive(Clone)]
pub struct AuthLayer {
    policy: Policy,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token itself.
        let policy = match self.policy {
            Policy::AllowAll(_) => "allow_all",
            Policy::SharedToken(..) => "shared_token",
            Policy::Callers(_) => "callers",
            Policy::RejectAll => "reject_all",
        };
        formatter.debug_struct("AuthLayer").field("policy", &policy).finish()
    }
}

impl AuthLayer {
    /// Requires `authorization: Bearer <token>` on every call except health checks, from one
    /// caller allowed everything.
    pub fn require_token(token: &str) -> Self {
        Self {
            policy: Policy::SharedToken(
                Arc::from(token.as_bytes()),
                Arc::new(Caller::unrestricted(SHARED_TOKEN_CALLER)),
            ),
        }
    }

    /// Accepts the callers of a callers file, each to what it may do.
    pub fn callers(callers: Callers) -> Self {
        Self { policy: Policy::Callers(Arc::new(callers)) }
    }

    /// Accepts every call. For local development only.
    pub fn allow_all() -> Self {
        Self { policy: Policy::AllowAll(Arc::new(Caller::unrestricted(ANONYMOUS_CALLER))) }
    }

    /// The policy `config` asks for: a callers file decides alone when there is one;
    /// otherwise a configured token is always required (even with `allow_unauthenticated`);
    /// with neither, calls are accepted only when `allow_unauthenticated` is set, and
    /// otherwise refused. Fails when the callers file cannot be read or is invalid.
    pub fn from_config(config: &ServerConfig) -> anyhow::Result<Self> {
        if let Some(path) = &config.callers_file {
            return Ok(Self::callers(Callers::load(Path::new(path))?));
        }
        Ok(match (&config.service_token, config.allow_unauthenticated) {
            (Some(token), _) => Self::require_token(token),
            (None, true) => Self::allow_all(),
            (None, false) => Self { policy: Policy::RejectAll },
        })
    }

    /// The caller of a call to `path` with these headers, if it may make it.
    #[cfg(test)]
    fn authorize(&self, path: &str, headers: &HeaderMap) -> Result<Arc<Caller>, Status> {
        let caller = self.identify(headers, None)?;
        permit(&caller, path, headers)?;
        Ok(caller)
    }

    /// Who is calling: the caller a verified client certificate names, else the one the
    /// `authorization` header's token names.
    fn identify(&self, headers: &HeaderMap, peer: Option<&PeerIdentity>) -> Result<Arc<Caller>, Status> {
        let missing = || unauthenticated("missing service token: send `authorization: Bearer <token>`");
        match &self.policy {
            Policy::AllowAll(anonymous) => Ok(Arc::clone(anonymous)),
            Policy::RejectAll => Err(unauthenticated("this server accepts no service token; it is misconfigured")),
            Policy::SharedToken(expected, shared) => {
                let presented = bearer_token(headers).ok_or_else(missing)?;
                // `ct_eq` on slices of unequal length returns false at once: the length of
                // the token is not secret, its bytes are.
                if bool::from(presented.as_bytes().ct_eq(expected)) {
                    Ok(Arc::clone(shared))
                } else {
                    Err(unauthenticated("invalid service token"))
                }
            }
            Policy::Callers(callers) => {
                if let Some(caller) = peer.and_then(|peer| callers.by_certificate(peer.as_str())) {
                    return Ok(Arc::clone(caller));
                }
                // Looked up by the token's SHA-256 digest: timing reveals nothing usable about
                // the token itself.
                let presented = bearer_token(headers).ok_or_else(missing)?;
                callers.by_token(presented).cloned().ok_or_else(|| unauthenticated("invalid service token"))
            }
        }
    }
}

/// Whether `caller` may make a call to `path` with these headers.
fn permit(caller: &Caller, path: &str, headers: &HeaderMap) -> Result<(), Status> {
    if !caller.may_call(path) {
        return Err(caller_not_allowed(
            caller,
            format!(
                "caller `{}` may not call {path}; ask the operators to allow it in the callers file",
                caller.name()
            ),
        ));
    }
    if headers.contains_key(USER_ID_HEADER) && !caller.acts_for_users() {
        return Err(caller_not_allowed(
            caller,
            format!("caller `{}` may not act for end users: drop the `{USER_ID_HEADER}` metadata", caller.name()),
        ));
    }
    Ok(())
}

/// `UNAUTHENTICATED`: no service token the server accepts.
fn unauthenticated(message: &str) -> Status {
    let reason = Reason::new(ErrorReason::Unauthenticated).with("header", AUTHORIZATION_HEADER);
    status::new(Code::Unauthenticated, reason, message)
}

/// `PERMISSION_DENIED` for a caller the callers file does not allow this.
fn caller_not_allowed(caller: &Caller, message: String) -> Status {
    let reason = Reason::new(ErrorReason::CallerNotAllowed).with("caller", caller.name());
    status::new(Code::PermissionDenied, reason, message)
}

/// The token of an `authorization: Bearer <token>` header, if there is one.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION_HEADER)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, layer: self.clone() }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Auth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        if is_health_check(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let caller = match self.layer.identify(request.headers(), request.extensions().get::<PeerIdentity>()) {
            Ok(caller) => caller,
            Err(status) => {
                let response = refuse(status, None);
                return Box::pin(async move { Ok(response) });
            }
        };
        if let Err(status) = permit(&caller, request.uri().path(), request.headers()) {
            let response = refuse(status, Some(caller.shared_name()));
            return Box::pin(async move { Ok(response) });
        }
        // The `grpc_request` span of the request-id layer is the current one here.
        tracing::Span::current().record("caller", caller.name());
        if caller.is_operator() {
            audit_acting_as_user(&caller, request.uri().path(), request.headers());
        }
        let label = CallerLabel(caller.shared_name());
        request.extensions_mut().insert(caller);
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            response.extensions_mut().insert(label);
            Ok(response)
        })
    }
}

/// The answer to a refused call, naming its caller for the metrics when it is known.
fn refuse<ResBody: Default>(status: Status, caller: Option<Arc<str>>) -> http::Response<ResBody> {
    // The `grpc_request` span already names the method and request id. At most one line a
    // second: a flood of refused calls must not flood the log.
    if let Some(suppressed) = REJECTION_LOG.admit() {
        tracing::warn!(code = ?status.code(), reason = status.message(), suppressed, "refused call");
    }
    let mut response: http::Response<ResBody> = status.into_http();
    response.extensions_mut().insert(RefusedByAuth);
    if let Some(caller) = caller {
        response.extensions_mut().insert(CallerLabel(caller));
    }
    response
}

/// Leaves an audit line when an operator identity acts as an end user.
fn audit_acting_as_user(caller: &Caller, path: &str, headers: &HeaderMap) {
    if let Some(user) = headers.get(USER_ID_HEADER) {
        let user = String::from_utf8_lossy(user.as_bytes());
        tracing::info!(target: crate::telemetry::AUDIT_TARGET, caller = caller.name(), user_id = %user, method = path, "operator acting as a user");
    }
}

/// The one rejection log line a second (with how many were left out since the last).
static REJECTION_LOG: RateLimitedLog = RateLimitedLog::new();

/// Lets one log line through per second, counting the ones it holds back.
struct RateLimitedLog {
    /// The second (since the Unix epoch) of the last line let through.
    last_second: std::sync::atomic::AtomicU64,
    /// Lines held back since then.
    suppressed: std::sync::atomic::AtomicU64,
}

impl RateLimitedLog {
    const fn new() -> Self {
        Self { last_second: std::sync::atomic::AtomicU64::new(0), suppressed: std::sync::atomic::AtomicU64::new(0) }
    }

    /// `Some(lines held back since the last one)` when this line may go out.
    fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let second =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if second > last
            && self.last_second.compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callers::token_sha256_hex;

    const PATH: &str = "/fanfare.messages.v1.MessageService/SendMessage";

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION_HEADER, authorization.parse().expect("valid header value"));
        headers
    }

    fn name(result: Result<Arc<Caller>, Status>) -> Result<String, tonic::Code> {
        result.map(|caller| caller.name().to_owned()).map_err(|status| status.code())
    }

    fn reason(result: Result<Arc<Caller>, Status>) -> Option<ErrorReason> {
        result.err().and_then(|status| status::reason_of(&status))
    }

    #[test]
    fn accepts_only_the_configured_bearer_token() {
        let layer = AuthLayer::require_token("secret");
        assert_eq!(name(layer.authorize(PATH, &headers("Bearer secret"))), Ok(SHARED_TOKEN_CALLER.to_owned()));
        assert!(layer.authorize(PATH, &headers("bearer  secret ")).is_ok());
        for refused in ["Bearer secre", "Bearer secret2", "Basic secret", "Bearer"] {
            assert_eq!(name(layer.authorize(PATH, &headers(refused))), Err(tonic::Code::Unauthenticated), "{refused}");
        }
        assert_eq!(reason(layer.authorize(PATH, &HeaderMap::new())), Some(ErrorReason::Unauthenticated));
        assert_eq!(reason(layer.authorize(PATH, &headers("Bearer secre"))), Some(ErrorReason::Unauthenticated));
    }

    #[test]
    fn callers_reach_only_their_methods_and_act_for_users_only_when_allowed() {
        let text = format!(
            "[[callers]]\nname = \"groups\"\ntoken_sha256 = [\"{}\"]\n\
             methods = [\"fanfare.messages.v1.MessageService/AppendSystemUpdates\"]\n\
             [[callers]]\nname = \"gateway\"\ntoken_sha256 = [\"{}\"]\n\
             methods = [\"fanfare.messages.v1.MessageService/*\"]\nacts_for_users = true",
            token_sha256_hex("groups-token"),
            token_sha256_hex("gateway-token"),
        );
        let layer = AuthLayer::callers(Callers::parse(&text).expect("valid"));
        let append = "/fanfare.messages.v1.MessageService/AppendSystemUpdates";
        assert_eq!(name(layer.authorize(append, &headers("Bearer groups-token"))), Ok("groups".to_owned()));
        assert_eq!(name(layer.authorize(PATH, &headers("Bearer groups-token"))), Err(tonic::Code::PermissionDenied));
        assert_eq!(reason(layer.authorize(PATH, &headers("Bearer groups-token"))), Some(ErrorReason::CallerNotAllowed));
        assert_eq!(name(layer.authorize(PATH, &headers("Bearer gateway-token"))), Ok("gateway".to_owned()));
        assert_eq!(name(layer.authorize(PATH, &headers("Bearer other"))), Err(tonic::Code::Unauthenticated));

        let mut as_user = headers("Bearer gateway-token");
        as_user.insert(USER_ID_HEADER, "7".parse().expect("valid"));
        assert!(layer.authorize(PATH, &as_user).is_ok());
        let mut groups_as_user = headers("Bearer groups-token");
        groups_as_user.insert(USER_ID_HEADER, "7".parse().expect("valid"));
        assert_eq!(name(layer.authorize(append, &groups_as_user)), Err(tonic::Code::PermissionDenied));
        assert_eq!(reason(layer.authorize(append, &groups_as_user)), Some(ErrorReason::CallerNotAllowed));
    }

    #[test]
    fn policy_follows_the_config() {
        let mut config = ServerConfig::for_dev();
        let layer = AuthLayer::from_config(&config).expect("valid");
        assert_eq!(name(layer.authorize(PATH, &HeaderMap::new())), Ok(ANONYMOUS_CALLER.to_owned()));

        config.service_token = Some("secret".to_owned());
        let layer = AuthLayer::from_config(&config).expect("valid");
        assert!(layer.authorize(PATH, &HeaderMap::new()).is_err());
        assert!(layer.authorize(PATH, &headers("Bearer secret")).is_ok());

        config.service_token = None;
        config.allow_unauthenticated = false;
        let layer = AuthLayer::from_config(&config).expect("valid");
        assert!(layer.authorize(PATH, &headers("Bearer anything")).is_err());

        config.callers_file = Some("/nonexistent/callers.toml".into());
        assert!(AuthLayer::from_config(&config).is_err(), "an unreadable callers file stops the start");
    }

    #[test]
    fn an_operator_acting_as_a_user_leaves_an_audit_line() {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("not poisoned").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let text = format!(
            "[[callers]]\nname = \"ops\"\ntoken_sha256 = [\"{}\"]\nmethods = [\"*\"]\nacts_for_users = true\noperator = true",
            token_sha256_hex("ops-token")
        );
        let callers = Callers::parse(&text).expect("valid");
        let ops = callers.by_token("ops-token").expect("known");
        let mut as_user = headers("Bearer ops-token");
        tracing::subscriber::with_default(subscriber, || {
            audit_acting_as_user(ops, PATH, &as_user);
            as_user.insert(USER_ID_HEADER, "42".parse().expect("valid"));
            audit_acting_as_user(ops, PATH, &as_user);
        });
        let log = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(log.lines().count(), 1, "one line, for the call acting as a user: {log}");
        for expected in ["fanfare::audit", "caller=\"ops\"", "user_id=42", PATH] {
            assert!(log.contains(expected), "{expected} missing from {log}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let printed = format!("{:?}", AuthLayer::require_token("hunter2"));
        assert!(!printed.contains("hunter2"));
    }

    #[test]
    fn rejections_are_logged_once_a_second_with_the_count_held_back() {
        let log = RateLimitedLog::new();
        assert_eq!(log.admit(), Some(0), "the first line goes out");
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        // The next second lets one through again, saying how many were held back.
        log.last_second.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(log.admit(), Some(2));
    }
}
