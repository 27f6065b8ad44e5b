//! The one table of error codes every protocol renders from.
//!
//! Each domain module has its own `thiserror` enum that maps itself to a [`Code`] here (no `_ =>`
//! arm), and each protocol adapter renders a [`Code`] in the shape its client expects
//! (GATEWAY `{code, message, requestId}`, CLOUD_API HTTP 200 `{code, message, requestId}`,
//! admin `{code, type, message, details}`). `docs/errors.md` is generated from [`Code::ALL`]
//! (`lightbase errors-doc`) and a test keeps it in sync.
//!
//! Wire codes are CloudBase's own UPPER_SNAKE spelling (what `@cloudbase/js-sdk` and
//! mini-program code branch on); `wx_code` is the numeric `errCode` of the `wx.cloud` dialect.

/// What kind of failure a code is; the admin API sends it as `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "invalid_request",
            Kind::Unauthenticated => "unauthenticated",
            Kind::Forbidden => "forbidden",
            Kind::NotFound => "not_found",
            Kind::Conflict => "conflict",
            Kind::TooLarge => "too_large",
            Kind::RateLimited => "rate_limited",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
        }
    }
}

macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = ($wire:literal, $kind:ident, $status:literal, $wx:literal); )*) => {
        /// Every error a client can see. Adding a row here is the only way to add an error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code { $( $(#[doc = $doc])* $variant, )* }

        impl Code {
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The code string on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $wire, )* }
            }
            pub fn kind(self) -> Kind {
                match self { $( Code::$variant => Kind::$kind, )* }
            }
            /// HTTP status for protocols that use one (GATEWAY, admin).
            pub fn http_status(self) -> u16 {
                match self { $( Code::$variant => $status, )* }
            }
            /// `errCode` of the `wx.cloud` dialect.
            pub fn wx_code(self) -> i32 {
                match self { $( Code::$variant => $wx, )* }
            }
            /// One line for people: what the code means.
            pub fn description(self) -> &'static str {
                match self { $( Code::$variant => concat!($($doc),*).trim_ascii(), )* }
            }
        }
    };
}

codes! {
    /// The request body is not valid JSON (or not the JSON type the endpoint takes).
    InvalidJson = ("INVALID_JSON", InvalidRequest, 400, -501007);
    /// A parameter is missing, has the wrong type, or is out of range (limit, skip, order, ...).
    InvalidParam = ("INVALID_PARAM", InvalidRequest, 400, -501007);
    /// A query, update or projection uses an operator that does not exist or is used wrongly.
    InvalidCommand = ("DATABASE_INVALID_COMMAND", InvalidRequest, 400, -502002);
    /// A GeoJSON value (a geo query's `$geometry`, or a document field a 2dsphere index covers) is not valid: the message says why (unclosed ring, longitude outside [-180, 180], latitude outside [-90, 90], self-crossing ring, ...).
    InvalidGeometry = ("DATABASE_INVALID_GEOMETRY", InvalidRequest, 400, -502002);
    /// A `$regex` does not compile.
    InvalidRegex = ("DATABASE_INVALID_REGEX", InvalidRequest, 400, -502002);
    /// Security rules that do not parse or have the wrong shape; the message names the rule key and the position.
    InvalidRule = ("INVALID_RULE", InvalidRequest, 400, -501007);
    /// A collection schema that is not a valid JSON Schema (draft 4, 6, 7, 2019-09 or 2020-12), is too large, or has a `$ref` outside itself; the message says what and where.
    InvalidSchema = ("INVALID_SCHEMA", InvalidRequest, 400, -501007);
    /// A document would not match its collection's schema; the message lists each failing path and reason. Nothing was written.
    SchemaViolation = ("DATABASE_SCHEMA_VIOLATION", InvalidRequest, 400, -501007);
    /// A collection, env or field name breaks the naming rules.
    InvalidName = ("INVALID_NAME", InvalidRequest, 400, -501007);
    /// A document or query is nested deeper than the configured maximum.
    NestingTooDeep = ("DATABASE_NESTING_TOO_DEEP", InvalidRequest, 400, -501007);
    /// The request names an environment that does not exist.
    InvalidEnv = ("INVALID_ENV", InvalidRequest, 400, -501005);
    /// The CLOUD_API `action` is not one this server handles.
    InvalidAction = ("INVALID_ACTION", InvalidRequest, 400, -501007);
    /// A CloudBase feature this server does not offer (legacy flat geo shapes, some aggregation stages and operators); the message names it.
    NotSupported = ("NOT_SUPPORTED", InvalidRequest, 400, -501007);
    /// The request needs a valid access token (missing, malformed, wrongly signed, revoked, or of another env).
    Unauthenticated = ("UNAUTHENTICATED", Unauthenticated, 401, -501007);
    /// The access token has expired: refresh it (the SDK does this by itself) and retry.
    AccessTokenExpired = ("ACCESS_TOKEN_EXPIRED", Unauthenticated, 401, -501007);
    /// The security rules of the collection do not allow this request for this caller.
    PermissionDenied = ("DATABASE_PERMISSION_DENIED", Forbidden, 403, -502003);
    /// Only an admin (admin token or server API key) may do this.
    AdminRequired = ("ADMIN_REQUIRED", Forbidden, 403, -502003);
    /// Wrong username, email or password.
    InvalidCredentials = ("INVALID_CREDENTIALS", Unauthenticated, 401, -501007);
    /// The account has no password to check or change (anonymous, WeChat and custom-ticket users): sign up with a username or email first.
    PasswordNotSet = ("PASSWORD_NOT_SET", InvalidRequest, 400, -501007);
    /// The refresh token is unknown, expired, revoked or was already used (reuse revokes its whole session).
    InvalidRefreshToken = ("INVALID_REFRESH_TOKEN", InvalidRequest, 400, -501007);
    /// The user has been disabled by an admin.
    UserDisabled = ("USER_DISABLED", Forbidden, 403, -501007);
    /// No user with this id in this environment.
    UserNotExist = ("USER_NOT_EXIST", NotFound, 404, -501007);
    /// The collection does not exist in this environment (create it first).
    CollectionNotExist = ("DATABASE_COLLECTION_NOT_EXIST", NotFound, 404, -502005);
    /// No document matched where exactly one was required.
    DocumentNotExist = ("DATABASE_DOCUMENT_NOT_EXIST", NotFound, 404, -502001);
    /// No open transaction with this id for this caller in this env: never started, already committed or rolled back, aborted by a conflict, or someone else's (the message says which of the caller's own it was).
    TransactionNotExist = ("DATABASE_TRANSACTION_NOT_EXIST", NotFound, 404, -502001);
    /// The transaction stayed open longer than its lifetime (default 10 s) and was discarded: nothing it did was written.
    TransactionExpired = ("DATABASE_TRANSACTION_EXPIRED", NotFound, 404, -502001);
    /// The collection has no index with this name.
    IndexNotExist = ("DATABASE_INDEX_NOT_EXIST", NotFound, 404, -502001);
    /// No route or resource at this address.
    NotFound = ("NOT_FOUND", NotFound, 404, -501007);
    /// The HTTP method is not allowed on this route.
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", InvalidRequest, 405, -501007);
    /// The collection already exists.
    CollectionExists = ("DATABASE_COLLECTION_ALREADY_EXIST", Conflict, 409, -502001);
    /// The environment already exists.
    EnvExists = ("ENV_ALREADY_EXIST", Conflict, 409, -501007);
    /// A user with this username, email or external id already exists in this environment.
    UserExists = ("USER_ALREADY_EXIST", Conflict, 409, -501007);
    /// An admin with this email already exists.
    AdminExists = ("ADMIN_ALREADY_EXIST", Conflict, 409, -501007);
    /// A document with this `_id` already exists, or a unique index already holds this value (the message names the index and the value).
    DuplicateId = ("DATABASE_DUPLICATE_KEY", Conflict, 409, -502001);
    /// An index with this name, or on the same fields, already exists.
    IndexExists = ("DATABASE_INDEX_ALREADY_EXIST", Conflict, 409, -502001);
    /// A document the transaction read or wrote was changed by another write since it read it. The transaction is over and nothing was written: run it again (`runTransaction` does).
    TransactionConflict = ("DATABASE_TRANSACTION_CONFLICT", Conflict, 409, -502001);
    /// The request body is larger than the configured maximum.
    BodyTooLarge = ("REQUEST_BODY_TOO_LARGE", TooLarge, 413, -501007);
    /// A document is larger than the configured maximum document size.
    DocumentTooLarge = ("DATABASE_DOCUMENT_TOO_LARGE", TooLarge, 413, -501007);
    /// The transaction has more operations, or buffers more bytes of documents, than allowed.
    TransactionTooLarge = ("DATABASE_TRANSACTION_TOO_LARGE", TooLarge, 413, -501007);
    /// The reply would exceed 1 MB: narrow the query, lower `limit` or project fewer fields.
    ResultTooLarge = ("DATABASE_RESULT_SIZE_LIMIT_EXCEEDED", TooLarge, 413, -602001);
    /// An aggregation would hold more in memory (`$group`, `$sort`, `$bucket`, `$bucketAuto`, `$sample`, `$facet`, `$lookup`, `$geoNear`) than `--aggregate-memory-limit`.
    AggregateMemoryLimit = ("DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED", TooLarge, 413, -502001);
    /// Too many requests from this address or user: wait the `Retry-After` seconds (CLOUD_API answers HTTP 200).
    RateLimited = ("EXCEED_REQUEST_LIMIT", RateLimited, 429, -501003);
    /// Too many transactions are open (on the server, or for this user), or together they buffer too much: commit or roll back some, or retry after `Retry-After`.
    TransactionLimit = ("DATABASE_TRANSACTION_LIMIT_EXCEEDED", RateLimited, 429, -501003);
    /// The server is shutting down or its data directory is in use.
    Unavailable = ("SERVICE_UNAVAILABLE", Unavailable, 503, -501001);
    /// Something failed inside the server; the cause is in the server log under the request id.
    Internal = ("SYS_ERR", Internal, 500, -501001);
}

/// An error as a protocol adapter sees it: a code and a message safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds for a `Retry-After` header (rate-limit refusals); every protocol sends it.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, answered with `Retry-After: secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Renders `docs/errors.md` from the table.
pub fn errors_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         Generated from `server/src/error.rs` by `lightbase errors-doc`; a test keeps this file in sync.\n\n\
         Every error reply carries one of these codes. GATEWAY routes (`/v1/...`) answer with the HTTP status \
         below and `{\"code\", \"message\", \"requestId\"}`; CLOUD_API (`POST /web`) answers HTTP 200 with the \
         same body (as CloudBase does); the admin API (`/admin/v1/...`) answers with the HTTP status and \
         `{\"code\", \"type\", \"message\", \"details\"}`. `wx errCode` is the number the `wx.cloud` dialect of \
         the SDK reports.\n\n\
         | code | type | HTTP | wx errCode | meaning |\n|---|---|---|---|---|\n",
    );
    for c in Code::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            c.as_str(),
            c.kind().as_str(),
            c.http_status(),
            c.wx_code(),
            c.description()
        ));
    }
    out
}
