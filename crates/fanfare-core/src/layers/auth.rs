//! Service-token authentication: every call except health checks must carry
//! `authorization: Bearer <token>`; a missing or wrong token is answered UNAUTHENTICATED.
//! Reflection needs the token too, so `grpcurl` callers pass `-H 'authorization: Bearer …'`.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use subtle::ConstantTimeEq;
use tonic::Status;
use tower::{Layer, Service};

use super::{ResponseFuture, is_health_check};
use crate::config::ServerConfig;

/// The metadata key that carries the service token.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// What the layer accepts.
#[derive(Clone)]
enum Policy {
    /// Every call, with or without a token (local development).
    AllowAll,
    /// Calls carrying this token, compared in constant time.
    Token(Arc<[u8]>),
    /// Nothing but health checks: the configuration named no token and did not allow
    /// unauthenticated calls, so fail closed.
    RejectAll,
}

/// Requires the configured service token on every call except `grpc.health.v1.Health`.
#[derive(Clone)]
pub struct AuthLayer {
    policy: Policy,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token itself.
        let policy = match self.policy {
            Policy::AllowAll => "allow_all",
            Policy::Token(_) => "token",
            Policy::RejectAll => "reject_all",
        };
        formatter.debug_struct("AuthLayer").field("policy", &policy).finish()
    }
}

impl AuthLayer {
    /// Requires `authorization: Bearer <token>` on every call except health checks.
    pub fn require_token(token: &str) -> Self {
        Self { policy: Policy::Token(Arc::from(token.as_bytes())) }
    }

    /// Accepts every call. For local development only.
    pub fn allow_all() -> Self {
        Self { policy: Policy::AllowAll }
    }

    /// The policy `config` asks for: a configured token is always required (even with
    /// `allow_unauthenticated`); with no token, calls are accepted only when
    /// `allow_unauthenticated` is set, and otherwise refused.
    pub fn from_config(config: &ServerConfig) -> Self {
        match (&config.service_token, config.allow_unauthenticated) {
            (Some(token), _) => Self::require_token(token),
            (None, true) => Self::allow_all(),
            (None, false) => Self { policy: Policy::RejectAll },
        }
    }

    /// Checks the request headers against the policy.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Status> {
        let expected = match &self.policy {
            Policy::AllowAll => return Ok(()),
            Policy::RejectAll => {
                return Err(Status::unauthenticated("this server accepts no service token; it is misconfigured"));
            }
            Policy::Token(expected) => expected,
        };
        let Some(presented) = bearer_token(headers) else {
            return Err(Status::unauthenticated("missing service token: send `authorization: Bearer <token>`"));
        };
        // `ct_eq` on slices of unequal length returns false at once: the length of the
        // token is not secret, its bytes are.
        if bool::from(presented.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid service token"))
        }
    }
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

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if is_health_check(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        match self.layer.authorize(request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                // The `grpc_request` span already names the method and request id. At most
                // one line a second: a flood of calls without a token must not flood the log.
                if let Some(suppressed) = REJECTION_LOG.admit() {
                    tracing::warn!(reason = status.message(), suppressed, "rejected unauthenticated call");
                }
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
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

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION_HEADER, authorization.parse().expect("valid header value"));
        headers
    }

    #[test]
    fn accepts_only_the_configured_bearer_token() {
        let layer = AuthLayer::require_token("secret");
        assert!(layer.authorize(&headers("Bearer secret")).is_ok());
        assert!(layer.authorize(&headers("bearer  secret ")).is_ok());
        assert!(layer.authorize(&headers("Bearer secre")).is_err());
        assert!(layer.authorize(&headers("Bearer secret2")).is_err());
        assert!(layer.authorize(&headers("Basic secret")).is_err());
        assert!(layer.authorize(&headers("Bearer")).is_err());
        assert!(layer.authorize(&HeaderMap::new()).is_err());
    }

    #[test]
    fn policy_follows_the_config() {
        let mut config = ServerConfig::for_dev();
        assert!(AuthLayer::from_config(&config).authorize(&HeaderMap::new()).is_ok());

        config.service_token = Some("secret".to_owned());
        let layer = AuthLayer::from_config(&config);
        assert!(layer.authorize(&HeaderMap::new()).is_err());
        assert!(layer.authorize(&headers("Bearer secret")).is_ok());

        config.service_token = None;
        config.allow_unauthenticated = false;
        let layer = AuthLayer::from_config(&config);
        assert!(layer.authorize(&headers("Bearer anything")).is_err());
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
