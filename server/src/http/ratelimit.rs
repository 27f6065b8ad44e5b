//! Rate-limit middleware: classifies each request by path, finds the client IP (the socket peer, or
//! `X-Forwarded-For` when the peer is a trusted proxy), takes a token from the limiter and answers
//! refusals with `429` + `Retry-After` in the shape of the request's protocol.

use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::{Either, MapOk, TryFutureExt};

use super::{admin::admin_error, auth_api::auth_error, cloudapi, gateway_error, AppState, RequestId};
use crate::error::{ApiError, Code};
use crate::ratelimit::{Class, RetryAfter, TrustedProxies};

/// The route class of a path (as the router matches it: percent-decoded), `None` if not limited.
pub fn classify(path: &str) -> Option<Class> {
    if is_signin(path) {
        return Some(Class::Signin);
    }
    if path == "/web" || path.starts_with("/web/") {
        return Some(Class::Database);
    }
    let prefixes = [
        ("/auth/", Class::Auth),
        ("/v1/database/", Class::Database),
        ("/v1/storages/", Class::Storage),
        ("/v1/functions/", Class::Functions),
        ("/admin/", Class::Admin),
    ];
    prefixes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, class)| *class)
}

/// Password and ticket sign-in and the routes that check a signed-in user's password (sudo,
/// password change), compared with repeated and trailing slashes removed so no spelling
/// of the path a router might accept escapes the strict class.
fn is_signin(path: &str) -> bool {
    const SIGNIN: [&str; 6] = [
        "/auth/v1/signin",
        "/auth/v1/signin/custom",
        "/auth/v2/signin/username",
        "/admin/v1/login",
        "/auth/v1/user/sudo",
        "/auth/v1/user/password",
    ];
    if !["signin", "login", "sudo", "password"].iter().any(|w| path.contains(w)) {
        return false;
    }
    let mut normal = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        normal.push('/');
        normal.push_str(segment);
    }
    SIGNIN.contains(&normal.as_str())
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the right-most
/// `X-Forwarded-For` hop that is not itself a trusted proxy (hops further left are written by the
/// client and cannot be believed). A malformed hop ends the walk at the last good one. Requests
/// without a peer (in-process tests) share `0.0.0.0`.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !trusted.contains(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(v) => hops.extend(v.split(',').map(parse_hop)),
            Err(_) => hops.push(None),
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) => {
                client = ip;
                if !trusted.contains(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// [`client_ip`] of a request a handler holds (for checks the middleware cannot make, e.g. a
/// sign-in action inside a CLOUD_API envelope).
pub fn client_ip_of(req: &HttpRequest, trusted: &TrustedProxies) -> IpAddr {
    client_ip(req.peer_addr().map(|a| a.ip()), req.headers(), trusted)
}

/// The error of a refusal: `EXCEED_REQUEST_LIMIT` with `Retry-After` (every protocol's error
/// renderer sends the header). Handlers return it after a per-env or per-user check.
pub fn refused(class: Class, retry: RetryAfter) -> ApiError {
    let secs = retry.secs();
    let what = match class {
        Class::Signin => "too many sign-in attempts",
        _ => "too many requests",
    };
    ApiError::new(Code::RateLimited, format!("{what}; retry after {secs} s")).with_retry_after(secs)
}

/// The refusal of a request to `path`: `429` + `Retry-After`, in the shape of the path's protocol
/// (`/auth/*` `{error, error_description}`, `/admin/*` `{code, type, message, details}`, CLOUD_API
/// `/web` HTTP 200 `{code, message, requestId}`, everything else GATEWAY `{code, message, requestId}`).
pub fn too_many_requests(path: &str, rid: &RequestId, class: Class, retry: RetryAfter) -> HttpResponse {
    let err = refused(class, retry);
    if path.starts_with("/auth/") {
        auth_error(&err)
    } else if path.starts_with("/admin/") {
        admin_error(rid, &err)
    } else if path == "/web" || path.starts_with("/web/") {
        cloudapi::error(rid, &err)
    } else {
        gateway_error(rid, &err)
    }
}

/// The route class of the request a handler holds (as the middleware classified it).
pub fn class_of(req: &HttpRequest) -> Option<Class> {
    classify(req.match_info().as_str())
}

/// Once a handler knows the env of its request: takes a token from the client IP's bucket of the
/// request's class in `env`, when `env` overrides that class's quota (a no-op otherwise: the
/// middleware's server-wide per-IP bucket already counted the request).
pub fn check_env(req: &HttpRequest, state: &AppState, env: &str) -> Result<(), ApiError> {
    let Some(class) = class_of(req) else { return Ok(()) };
    let ip = client_ip_of(req, &state.config.trusted_proxies);
    state.limiter.check_env_ip(env, class, ip).map_err(|retry| {
        tracing::debug!(%ip, env, class = class.as_str(), retry_after = retry.secs(), "rate limited (env)");
        refused(class, retry)
    })
}

/// Takes a token from the bucket of one user (`key`: a uid, or [`crate::ratelimit::account_key`])
/// in `class`, with `env`'s quota if it overrides the class.
pub fn check_user(state: &AppState, env: Option<&str>, class: Class, key: &str) -> Result<(), ApiError> {
    state.limiter.check_user(env, class, key).map_err(|retry| {
        tracing::debug!(
            env,
            class = class.as_str(),
            retry_after = retry.secs(),
            "rate limited (user)"
        );
        refused(class, retry)
    })
}

/// The middleware (`App::wrap(RateLimit)`); reads the limiter and trusted proxies from [`AppState`].
pub struct RateLimit;

impl<S, B> Transform<S, ServiceRequest> for RateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RateLimitService<S>;
    type InitError = ();
    type Future = Ready<Result<RateLimitService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitService { service }))
    }
}

pub struct RateLimitService<S> {
    service: S,
}

type Passed<B> = fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>;

impl<S, B> Service<ServiceRequest> for RateLimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    #[allow(clippy::type_complexity)]
    type Future = Either<MapOk<S::Future, Passed<B>>, Ready<Result<Self::Response, Self::Error>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match refusal(&req) {
            Some(res) => Either::Right(ready(Ok(req.into_response(res).map_into_right_body()))),
            None => Either::Left(
                self.service
                    .call(req)
                    .map_ok(ServiceResponse::map_into_left_body as Passed<B>),
            ),
        }
    }
}

fn refusal(req: &ServiceRequest) -> Option<HttpResponse> {
    let path = req.match_info().as_str();
    let class = classify(path)?;
    let state = req.app_data::<web::Data<AppState>>()?;
    let ip = client_ip(
        req.peer_addr().map(|a| a.ip()),
        req.headers(),
        &state.config.trusted_proxies,
    );
    let retry = state.limiter.check_ip(class, ip).err()?;
    tracing::debug!(%ip, class = class.as_str(), retry_after = retry.secs(), "rate limited");
    let rid = req
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId(String::new()));
    Some(too_many_requests(path, &rid, class, retry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn paths_map_to_classes() {
        let cases = [
            ("/health", None),
            ("/", None),
            ("/nope", None),
            ("/auth/v1/signin", Some(Class::Signin)),
            ("/auth/v1/signin/", Some(Class::Signin)),
            ("//auth//v1/signin", Some(Class::Signin)),
            ("/auth/v1/signin/custom", Some(Class::Signin)),
            ("/auth/v2/signin/username", Some(Class::Signin)),
            ("/admin/v1/login", Some(Class::Signin)),
            ("/auth/v1/signin/anonymously", Some(Class::Auth)),
            ("/auth/v1/token", Some(Class::Auth)),
            ("/auth/v1/user/me", Some(Class::Auth)),
            ("/auth/v1/user/sudo", Some(Class::Signin)),
            ("/auth/v1/user//password/", Some(Class::Signin)),
            (
                "/v1/database/instances/(default)/databases/(default)/collections",
                Some(Class::Database),
            ),
            ("/web", Some(Class::Database)),
            ("/v1/storages/get-objects-upload-info", Some(Class::Storage)),
            ("/v1/functions/hello", Some(Class::Functions)),
            ("/admin/v1/envs", Some(Class::Admin)),
            ("/websocket", None),
        ];
        for (path, class) in cases {
            assert_eq!(classify(path), class, "{path}");
        }
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        let none = TrustedProxies::default();
        let h = xff(&["6.6.6.6, 1.2.3.4"]);
        // untrusted peer: the header is ignored
        assert_eq!(client_ip(Some(ip("5.5.5.5")), &h, &trusted), ip("5.5.5.5"));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &none), ip("10.0.0.2"));
        // trusted peer: the right-most untrusted hop; the spoofable left part is not read
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &trusted), ip("1.2.3.4"));
        // a chain of trusted proxies is skipped
        let h = xff(&["6.6.6.6, 1.2.3.4, 10.9.9.9", "192.168.1.1"]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &trusted), ip("1.2.3.4"));
        // every hop trusted: the left-most one
        let h = xff(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &trusted), ip("10.1.1.1"));
        // no header: the proxy itself
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        // ports, brackets and IPv4-mapped addresses
        let h = xff(&["[2001:db8::1]:443, 1.2.3.4:5678"]);
        assert_eq!(client_ip(Some(ip("::ffff:10.0.0.2")), &h, &trusted), ip("1.2.3.4"));
        // garbage stops the walk at the last good hop
        let h = xff(&["1.2.3.4, garbage, 10.3.3.3"]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &trusted), ip("10.3.3.3"));
        // no peer at all
        assert_eq!(client_ip(None, &h, &trusted), ip("0.0.0.0"));
    }
}
