//! Protocol adapters only: routes, request ids, body reading and the error shapes of each protocol.
//! Handlers parse, call the domain, and shape the reply for their client; no domain logic here.

pub mod admin;
pub mod admin_indexes;
pub mod admin_schema;
pub mod auth_api;
pub mod auth_providers;
pub mod cloudapi;
pub mod db_calls;
pub mod gateway;
pub mod ratelimit;
pub mod transactions;

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use actix_web::http::StatusCode;
use actix_web::{web, App, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::config::Config;
use crate::db::Database;
use crate::error::{ApiError, Code};

/// What every handler can reach.
pub struct AppState {
    pub db: Arc<Database>,
    pub config: Config,
    /// Users, sessions, tokens, admins and API keys.
    pub auth: Arc<crate::auth::Auth>,
    /// Token buckets per route class, client IP and user; the middleware checks IPs, handlers users
    /// and per-env quotas.
    pub limiter: Arc<crate::ratelimit::RateLimiter>,
    /// Per-env runtime settings (rate limits); changes go to the store and to `limiter`.
    pub settings: crate::settings::Settings,
    /// Compiled security rules per collection.
    pub rules: crate::access::RulesCache,
    /// Open client transactions (ids, owners, deadlines, buffered writes).
    pub txns: Arc<crate::db::Transactions>,
    /// Scans are CPU-bound: running more at once than there are cores only adds memory and latency.
    scan_permits: tokio::sync::Semaphore,
}

impl AppState {
    /// [`AppState::try_new`] for tests and tools: panics if auth cannot open its signing key.
    pub fn new(db: Arc<Database>, config: Config) -> AppState {
        match Self::try_new(db, config) {
            Ok(state) => state,
            Err(e) => panic!("{e}"),
        }
    }

    /// Opens auth (creating the signing key on first start) and everything else handlers reach.
    pub fn try_new(db: Arc<Database>, config: Config) -> Result<AppState, String> {
        let settings = crate::auth::AuthSettings::from_config(&config);
        let auth =
            crate::auth::Auth::open(db.clone(), &config.dir, settings).map_err(|e| format!("cannot open auth: {e}"))?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let limiter = Arc::new(crate::ratelimit::RateLimiter::new(config.rate_limits));
        limiter.start_sweeper(crate::ratelimit::SWEEP_EVERY);
        let settings = crate::settings::Settings::open(db.clone(), limiter.clone())
            .map_err(|e| format!("cannot load the env settings: {e}"))?;
        let txns = crate::db::Transactions::new(crate::db::TxnLimits {
            ttl: std::time::Duration::from_secs(config.transaction_ttl),
            max_open: config.transaction_max_open,
            max_ops: config.transaction_max_ops,
        });
        txns.start_sweeper(std::time::Duration::from_millis(500));
        Ok(AppState {
            txns,
            auth: Arc::new(auth),
            limiter,
            settings,
            rules: crate::access::RulesCache::default(),
            db,
            config,
            scan_permits: tokio::sync::Semaphore::new(cores),
        })
    }
}

impl AppState {
    pub fn client_limits(&self) -> crate::access::ClientLimits {
        crate::access::ClientLimits {
            max_limit: self.config.client_max_limit,
            wx_max_limit: self.config.wx_max_limit,
        }
    }
}

pub type State = web::Data<AppState>;

/// Who makes a request to `env` (GATEWAY, CLOUD_API once the envelope is parsed): the verified
/// token (the CLOUD_API envelope's `access_token`, else `Authorization: Bearer`), or a guest when
/// there is none. A user token must belong to `env`. Charges the env's per-IP bucket of the
/// request's class (when the env overrides it) and the user's own bucket (the env's quota or the
/// server's), so refusals carry `Retry-After`.
pub fn caller_of(
    req: &HttpRequest,
    state: &State,
    env: &str,
    envelope_token: Option<&str>,
) -> Result<Caller, ApiError> {
    ratelimit::check_env(req, state, env)?;
    let token = envelope_token
        .filter(|t| !t.is_empty())
        .or_else(|| auth_api::bearer_token(req));
    let Some(token) = token else { return Ok(Caller::Guest) };
    let caller = state.auth.verify_for_env(token, env)?;
    if let (Caller::User(id), Some(class)) = (&caller, ratelimit::class_of(req)) {
        ratelimit::check_user(state, Some(env), class, &id.uid)?;
    }
    Ok(caller)
}

/// The production application: every route of every protocol, with request ids and JSON errors.
pub fn build_app(
    state: State,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        // Innermost of the three: requests already have their id (429s carry it) and CORS
        // preflights are answered before they reach the limiter.
        .wrap(ratelimit::RateLimit)
        .wrap_fn(|req, srv| {
            let id = client_request_id(&req).unwrap_or_else(new_request_id);
            req.extensions_mut().insert(RequestId(id.clone()));
            let fut = srv.call(req);
            async move {
                let mut res = fut.await?;
                if let Ok(v) = HeaderValue::from_str(&id) {
                    res.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
                }
                Ok(res)
            }
        })
        // Browsers call from other origins. Access is by bearer token (never cookies), so any origin
        // may ask; an allow-list setting arrives with the runtime settings of the auth issue.
        .wrap(
            actix_cors::Cors::default()
                .allow_any_origin()
                .allow_any_method()
                .allow_any_header()
                .expose_headers(["x-request-id", "retry-after"])
                .max_age(3600),
        )
        .service(
            web::resource("/health")
                .route(web::get().to(health))
                .default_service(web::to(method_not_allowed)),
        )
        .configure(gateway::routes)
        .configure(cloudapi::routes)
        .configure(admin::routes)
        .configure(admin_indexes::routes)
        .configure(admin_schema::routes)
        .configure(auth_api::routes)
        .configure(auth_providers::routes)
        .default_service(web::to(not_found))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn not_found(req: HttpRequest, rid: RequestId) -> HttpResponse {
    let err = ApiError::new(Code::NotFound, format!("no route for {} {}", req.method(), req.path()));
    gateway_error(&rid, &err)
}

/// 405 for a known path with a method it does not take.
pub async fn method_not_allowed(req: HttpRequest, rid: RequestId) -> HttpResponse {
    let err = ApiError::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    );
    gateway_error(&rid, &err)
}

/// The request id of this request: the client's `x-request-id` if it is sane, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(new_request_id()));
        ready(Ok(id))
    }
}

fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get("x-request-id")?.to_str().ok()?;
    let sane = (1..=128).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    sane.then(|| v.to_string())
}

fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Reads a request body of at most `limit` bytes (checked against `Content-Length` first, then
/// while streaming). Oversize and unreadable bodies are 4xx.
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let too_large = || ApiError::new(Code::BodyTooLarge, format!("request body is larger than {limit} bytes"));
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(Code::InvalidParam, format!("cannot read request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Reads a JSON body of at most `limit` bytes. Oversize, unreadable and malformed bodies are 4xx.
pub async fn read_json(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Value, ApiError> {
    let buf = read_body(req, payload, limit).await?;
    if buf.is_empty() {
        return Err(ApiError::new(
            Code::InvalidJson,
            "request body is empty; a JSON object is required",
        ));
    }
    parse_json(&buf, "body")
}

/// Parses JSON text from a client. serde_json stops at 128 levels; that is reported as the nesting
/// error it is, not as malformed JSON.
pub fn parse_json(bytes: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            ApiError::new(
                Code::NestingTooDeep,
                format!("{what} is nested more than 128 levels deep"),
            )
        } else {
            ApiError::new(Code::InvalidJson, format!("malformed JSON {what}: {e}"))
        }
    })
}

/// Runs blocking database work (scans, multi-document writes) off the async workers, at most one
/// per core at a time.
pub async fn blocking<T, F>(state: &State, f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let _permit = state
        .scan_permits
        .acquire()
        .await
        .map_err(|_| ApiError::new(Code::Unavailable, "the server is shutting down"))?;
    web::block(f).await.map_err(|e| {
        tracing::error!(error = %e, "blocking task failed");
        ApiError::new(Code::Internal, "internal error")
    })?
}

/// GATEWAY and default error shape: `{code, message, requestId}` with the code's HTTP status.
pub fn gateway_error(rid: &RequestId, err: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let res = HttpResponse::build(status)
        .json(json!({ "code": err.code.as_str(), "message": err.message, "requestId": rid.0 }));
    with_retry_after(res, err)
}

/// Adds `Retry-After` to the reply of an error that has one (rate-limit refusals); every error
/// renderer of every protocol calls it.
pub fn with_retry_after(mut res: HttpResponse, err: &ApiError) -> HttpResponse {
    if let Some(secs) = err.retry_after {
        res.headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// Adds `requestId` to an object reply.
pub fn with_request_id(rid: &RequestId, mut body: Value) -> Value {
    if let Value::Object(m) = &mut body {
        m.insert("requestId".into(), Value::String(rid.0.clone()));
    }
    body
}

/// An optional boolean field of a request body; anything but a boolean (or absent/null) is a 4xx.
pub fn opt_bool(body: &Value, key: &str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::new(Code::InvalidParam, format!("`{key}` must be a boolean"))),
    }
}

/// A required string field of a request body.
pub fn req_str<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(Code::InvalidParam, format!("`{key}` is required and must be a string")))
}

/// The body must be a JSON object.
pub fn require_object(body: &Value) -> Result<(), ApiError> {
    if body.is_object() {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::InvalidJson,
            "the request body must be a JSON object",
        ))
    }
}
