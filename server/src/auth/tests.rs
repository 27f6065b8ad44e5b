//! Service tests of auth over a temp data dir (no HTTP).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::db::{DbError, Limits};

struct Fixture {
    _dir: tempfile::TempDir,
    db: Arc<Database>,
    auth: Auth,
}

fn settings() -> AuthSettings {
    AuthSettings {
        access_token_ttl_secs: 3600,
        refresh_token_ttl_secs: 3600,
        admin_token_ttl_secs: 3600,
        static_admin_key: Some("a-static-key-of-at-least-32-characters".into()),
    }
}

fn fixture_with(s: AuthSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Limits::default()).unwrap());
    let auth = Auth::open(db.clone(), dir.path(), s).unwrap();
    Fixture { _dir: dir, db, auth }
}

fn fixture() -> Fixture {
    fixture_with(settings())
}

fn signup(username: &str) -> SignUp {
    SignUp {
        username: Some(username.into()),
        email: None,
        password: "correct horse".into(),
    }
}

fn user_of(auth: &Auth, token: &str) -> Identity {
    match auth.verify_bearer(token).unwrap() {
        Caller::User(id) => id,
        other => panic!("expected a user, got {other:?}"),
    }
}

fn is_unauthenticated<T: std::fmt::Debug>(r: Result<T, AuthError>) -> bool {
    matches!(r, Err(AuthError::Unauthenticated(_)))
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn anonymous_sign_in_gives_a_verifiable_anonymous_identity() {
    let f = fixture();
    let c = f.auth.sign_in_anonymously("default").await.unwrap();
    assert_eq!(c.token_type, "Bearer");
    assert_eq!(c.scope, "anonymous");
    assert_eq!(c.expires_in, 3600);
    let id = user_of(&f.auth, &c.access_token);
    assert_eq!(id.uid, c.sub);
    assert_eq!(id.env, "default");
    assert!(id.anonymous);
    assert_eq!(id.login_type, LoginType::Anonymous);
    assert_eq!(id.caller_id(), c.sub);
    let claims = claims_of(&c.access_token);
    assert_eq!(claims["typ"], "access");
    assert_eq!(claims["lt"], "ANONYMOUS");
    assert_eq!(claims["env"], "default");
    assert!(claims["sid"].is_string());
    assert!(matches!(
        f.auth.sign_in_anonymously("nope").await,
        Err(AuthError::Db(DbError::InvalidEnv(_)))
    ));
}

#[tokio::test]
async fn sign_up_and_password_sign_in() {
    let f = fixture();
    let c = f.auth.sign_up("default", signup("Alice"), None).await.unwrap();
    assert_eq!(c.scope, "user");
    let id = user_of(&f.auth, &c.access_token);
    assert_eq!(id.login_type, LoginType::Username);
    assert!(!id.anonymous);
    // usernames are unique without regard to case, and sign-in ignores case
    let dup = f.auth.sign_up("default", signup("alice"), None).await;
    assert!(matches!(dup, Err(AuthError::UserExists(_))), "{dup:?}");
    let c2 = f
        .auth
        .sign_in_password("default", "ALICE", "correct horse")
        .await
        .unwrap();
    assert_eq!(c2.sub, c.sub);
    assert!(matches!(
        f.auth.sign_in_password("default", "alice", "wrong horse").await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        f.auth.sign_in_password("default", "bob", "correct horse").await,
        Err(AuthError::InvalidCredentials)
    ));
    // another env is another user base
    assert!(matches!(
        f.auth.sign_in_password("nope", "alice", "correct horse").await,
        Err(AuthError::Db(DbError::InvalidEnv(_)))
    ));
    // email sign-up and sign-in
    let e = SignUp {
        username: None,
        email: Some("Bob@Example.com".into()),
        password: "12345678".into(),
    };
    let c3 = f.auth.sign_up("default", e, None).await.unwrap();
    let c4 = f
        .auth
        .sign_in_password("default", "bob@example.com", "12345678")
        .await
        .unwrap();
    assert_eq!(c3.sub, c4.sub);
    assert_eq!(user_of(&f.auth, &c4.access_token).login_type, LoginType::Email);
}

#[tokio::test]
async fn sign_up_validates_its_input() {
    let f = fixture();
    let bad = |username: Option<&str>, email: Option<&str>, password: &str| SignUp {
        username: username.map(str::to_string),
        email: email.map(str::to_string),
        password: password.into(),
    };
    for req in [
        bad(Some("alice"), None, "short"),
        bad(Some("al ice"), None, "long enough"),
        bad(Some(&"a".repeat(65)), None, "long enough"),
        bad(Some("a/b"), None, "long enough"),
        bad(None, Some("not-an-email"), "long enough"),
        bad(None, Some("a@b"), "long enough"),
        bad(None, Some("a b@c.d"), "long enough"),
        bad(None, None, "long enough"),
        bad(Some("alice"), None, &"x".repeat(MAX_PASSWORD_LEN + 1)),
    ] {
        let r = f.auth.sign_up("default", req.clone(), None).await;
        assert!(matches!(r, Err(AuthError::InvalidParam(_))), "{req:?} -> {r:?}");
    }
    assert!(f
        .auth
        .sign_up("default", bad(Some("a.b-c_D9"), None, "8 chars!"), None)
        .await
        .is_ok());
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let f = fixture();
    let c1 = f.auth.sign_up("default", signup("alice"), None).await.unwrap();
    let c2 = f.auth.refresh("default", &c1.refresh_token).await.unwrap();
    assert_eq!(c2.sub, c1.sub);
    assert_ne!(c2.refresh_token, c1.refresh_token);
    assert_eq!(claims_of(&c2.access_token)["sid"], claims_of(&c1.access_token)["sid"]);
    user_of(&f.auth, &c2.access_token);
    // a refresh token of another env is refused without harm
    assert!(matches!(
        f.auth.refresh("other", &c2.refresh_token).await,
        Err(AuthError::InvalidRefreshToken(_))
    ));
    // reuse of the spent token: refused, and the whole session is gone
    assert!(matches!(
        f.auth.refresh("default", &c1.refresh_token).await,
        Err(AuthError::InvalidRefreshToken(_))
    ));
    assert!(matches!(
        f.auth.refresh("default", &c2.refresh_token).await,
        Err(AuthError::InvalidRefreshToken(_))
    ));
    assert!(is_unauthenticated(f.auth.verify_bearer(&c1.access_token)));
    assert!(is_unauthenticated(f.auth.verify_bearer(&c2.access_token)));
    // other sessions of the same user are untouched
    let other = f
        .auth
        .sign_in_password("default", "alice", "correct horse")
        .await
        .unwrap();
    user_of(&f.auth, &other.access_token);
    assert!(matches!(
        f.auth.refresh("default", "garbage").await,
        Err(AuthError::InvalidRefreshToken(_))
    ));
    assert!(matches!(
        f.auth.refresh("default", "").await,
        Err(AuthError::InvalidRefreshToken(_))
    ));
}

#[tokio::test]
async fn refresh_tokens_expire() {
    let f = fixture_with(AuthSettings {
        refresh_token_ttl_secs: 1,
        ..settings()
    });
    let c = f.auth.sign_in_anonymously("default").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(matches!(
        f.auth.refresh("default", &c.refresh_token).await,
        Err(AuthError::InvalidRefreshToken(m)) if m.contains("expired")
    ));
    // and expired sessions are swept at the next start
    assert!(f.auth.sweep_expired().unwrap() >= 2);
}

#[tokio::test]
async fn revoke_and_sign_out_end_the_session_at_once() {
    let f = fixture();
    let a = f.auth.sign_in_anonymously("default").await.unwrap();
    f.auth.revoke(&a.access_token).await.unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&a.access_token)));
    assert!(f.auth.refresh("default", &a.refresh_token).await.is_err());
    // by refresh token
    let b = f.auth.sign_in_anonymously("default").await.unwrap();
    f.auth.revoke(&b.refresh_token).await.unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&b.access_token)));
    // unknown and garbage tokens are accepted silently
    f.auth.revoke("nonsense").await.unwrap();
    f.auth.revoke("a.b.c").await.unwrap();
    // sign-out needs a valid token
    let c = f.auth.sign_in_anonymously("default").await.unwrap();
    f.auth.sign_out(&c.access_token).await.unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&c.access_token)));
    assert!(f.auth.sign_out("a.b.c").await.is_err());
}

#[tokio::test]
async fn disabled_and_deleted_users_stop_at_once() {
    let f = fixture();
    let c = f.auth.sign_up("default", signup("alice"), None).await.unwrap();
    let u = f.auth.set_user_disabled("default", &c.sub, true).await.unwrap();
    assert!(u.disabled);
    assert!(is_unauthenticated(f.auth.verify_bearer(&c.access_token)));
    assert!(f.auth.refresh("default", &c.refresh_token).await.is_err());
    assert!(matches!(
        f.auth.sign_in_password("default", "alice", "correct horse").await,
        Err(AuthError::UserDisabled)
    ));
    // a wrong password does not reveal that the account is disabled
    assert!(matches!(
        f.auth.sign_in_password("default", "alice", "wrong horse").await,
        Err(AuthError::InvalidCredentials)
    ));
    f.auth.set_user_disabled("default", &c.sub, false).await.unwrap();
    // the sessions closed by disabling stay closed
    assert!(is_unauthenticated(f.auth.verify_bearer(&c.access_token)));
    let c2 = f
        .auth
        .sign_in_password("default", "alice", "correct horse")
        .await
        .unwrap();
    user_of(&f.auth, &c2.access_token);
    f.auth.delete_user("default", &c.sub).await.unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&c2.access_token)));
    assert!(matches!(
        f.auth.user("default", &c.sub),
        Err(AuthError::UserNotFound(_))
    ));
    assert!(matches!(
        f.auth.delete_user("default", &c.sub).await,
        Err(AuthError::UserNotFound(_))
    ));
    // the username is free again
    f.auth.sign_up("default", signup("alice"), None).await.unwrap();
}

#[tokio::test]
async fn anonymous_upgrade_keeps_the_uid() {
    let f = fixture();
    f.db.create_env("other").unwrap().wait().await.unwrap();
    let anon = f.auth.sign_in_anonymously("default").await.unwrap();
    // a token of another env cannot upgrade here
    assert!(is_unauthenticated(
        f.auth.sign_up("other", signup("alice"), Some(&anon.access_token)).await
    ));
    let up = f
        .auth
        .sign_up("default", signup("alice"), Some(&anon.access_token))
        .await
        .unwrap();
    assert_eq!(up.sub, anon.sub);
    assert_eq!(up.scope, "user");
    let id = user_of(&f.auth, &up.access_token);
    assert!(!id.anonymous);
    assert_eq!(id.login_type, LoginType::Username);
    // the anonymous session ended
    assert!(is_unauthenticated(f.auth.verify_bearer(&anon.access_token)));
    let user = f.auth.user("default", &anon.sub).unwrap();
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert!(!user.anonymous);
    // a registered user's token does not upgrade: a new account is made
    let other = f
        .auth
        .sign_up("default", signup("bob"), Some(&up.access_token))
        .await
        .unwrap();
    assert_ne!(other.sub, up.sub);
    assert!(is_unauthenticated(
        f.auth.sign_up("default", signup("carol"), Some("not-a-token")).await
    ));
}

#[tokio::test]
async fn tokens_are_refused_in_other_envs() {
    let f = fixture();
    f.db.create_env("other").unwrap().wait().await.unwrap();
    let c = f.auth.sign_in_anonymously("default").await.unwrap();
    assert!(f.auth.verify_for_env(&c.access_token, "default").is_ok());
    assert!(is_unauthenticated(f.auth.verify_for_env(&c.access_token, "other")));
    f.auth.create_admin("root@example.com", "admin password").await.unwrap();
    let admin = f.auth.admin_login("root@example.com", "admin password").await.unwrap();
    assert_eq!(f.auth.verify_for_env(&admin.token, "other").unwrap(), Caller::Admin);
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let f = fixture();
    let c = f.auth.sign_in_anonymously("default").await.unwrap();
    let victim = f.auth.sign_in_anonymously("default").await.unwrap();
    let parts: Vec<&str> = c.access_token.split('.').collect();
    // changed claims, original signature
    let mut claims = claims_of(&c.access_token);
    claims["sub"] = json!(victim.sub);
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert!(is_unauthenticated(f.auth.verify_bearer(&forged)));
    // typ: admin with the same signature
    let mut admin_claims = claims_of(&c.access_token);
    admin_claims["typ"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64(&admin_claims), parts[2]);
    assert!(is_unauthenticated(f.auth.verify_bearer(&forged)));
    // alg: none
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), parts[1]);
    assert!(is_unauthenticated(f.auth.verify_bearer(&none)));
    let none = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1],
        parts[2]
    );
    assert!(is_unauthenticated(f.auth.verify_bearer(&none)));
    // another algorithm of the same family
    let hs512 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS512", "typ": "JWT"})),
        parts[1],
        parts[2]
    );
    assert!(is_unauthenticated(f.auth.verify_bearer(&hs512)));
    // a well-formed token signed with another key
    let other_key = jsonwebtoken::EncodingKey::from_secret(&[7u8; 32]);
    let wrong = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims_of(&c.access_token),
        &other_key,
    )
    .unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&wrong)));
    // garbage
    for t in ["", "x", "a.b.c", "lb_nope", &"a".repeat(10_000)] {
        assert!(is_unauthenticated(f.auth.verify_bearer(t)), "{t:.20}");
    }
    // the genuine one still works
    user_of(&f.auth, &c.access_token);
}

#[tokio::test]
async fn access_tokens_expire() {
    let f = fixture_with(AuthSettings {
        access_token_ttl_secs: 1,
        ..settings()
    });
    let c = f.auth.sign_in_anonymously("default").await.unwrap();
    user_of(&f.auth, &c.access_token);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(matches!(
        f.auth.verify_bearer(&c.access_token),
        Err(AuthError::TokenExpired)
    ));
    // the refresh token still gives a fresh access token
    let c2 = f.auth.refresh("default", &c.refresh_token).await.unwrap();
    user_of(&f.auth, &c2.access_token);
    // an expired token can still be revoked (sign-out after a long idle)
    f.auth.revoke(&c.access_token).await.unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&c2.access_token)));
}

#[tokio::test]
async fn the_signing_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Limits::default()).unwrap());
    let token = {
        let auth = Auth::open(db.clone(), dir.path(), settings()).unwrap();
        auth.sign_in_anonymously("default").await.unwrap().access_token
    };
    let auth = Auth::open(db, dir.path(), settings()).unwrap();
    user_of(&auth, &token);
}

#[tokio::test]
async fn external_identities_are_created_once_and_found_again() {
    let f = fixture();
    let c1 = f
        .auth
        .sign_in_external("default", External::Custom { uid: "user-42".into() })
        .await
        .unwrap();
    let id = user_of(&f.auth, &c1.access_token);
    assert_eq!(id.login_type, LoginType::Custom);
    assert!(!id.anonymous);
    assert_eq!(id.caller_id(), c1.sub);
    let c2 = f
        .auth
        .sign_in_external("default", External::Custom { uid: "user-42".into() })
        .await
        .unwrap();
    assert_eq!(c2.sub, c1.sub);
    assert_eq!(
        f.auth.user("default", &c1.sub).unwrap().custom_id.as_deref(),
        Some("user-42")
    );

    let w1 = f
        .auth
        .sign_in_external(
            "default",
            External::WeChat {
                openid: "oABC_123-x".into(),
                unionid: None,
            },
        )
        .await
        .unwrap();
    let id = user_of(&f.auth, &w1.access_token);
    assert_eq!(id.login_type, LoginType::WeChatOpen);
    assert_eq!(id.openid.as_deref(), Some("oABC_123-x"));
    assert_eq!(id.caller_id(), "oABC_123-x");
    assert_eq!(claims_of(&w1.access_token)["oid"], "oABC_123-x");
    let w2 = f
        .auth
        .sign_in_external(
            "default",
            External::WeChat {
                openid: "oABC_123-x".into(),
                unionid: Some("uU1".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(w2.sub, w1.sub);
    assert_eq!(user_of(&f.auth, &w2.access_token).unionid.as_deref(), Some("uU1"));
    // the same custom id in another env is another user; ids are validated
    f.db.create_env("other").unwrap().wait().await.unwrap();
    let o = f
        .auth
        .sign_in_external("other", External::Custom { uid: "user-42".into() })
        .await
        .unwrap();
    assert_ne!(o.sub, c1.sub);
    for bad in [
        External::Custom { uid: String::new() },
        External::Custom { uid: "a/b".into() },
        External::Custom { uid: "x".repeat(65) },
        External::WeChat {
            openid: "bad id".into(),
            unionid: None,
        },
        External::WeChat {
            openid: "ok".into(),
            unionid: Some("bad/union".into()),
        },
    ] {
        let r = f.auth.sign_in_external("default", bad.clone()).await;
        assert!(matches!(r, Err(AuthError::InvalidParam(_))), "{bad:?} -> {r:?}");
    }
    // disabled external users cannot sign in
    f.auth.set_user_disabled("default", &w1.sub, true).await.unwrap();
    let r = f
        .auth
        .sign_in_external(
            "default",
            External::WeChat {
                openid: "oABC_123-x".into(),
                unionid: None,
            },
        )
        .await;
    assert!(matches!(r, Err(AuthError::UserDisabled)));
}

#[tokio::test]
async fn admins_and_api_keys() {
    let f = fixture();
    assert!(!f.auth.has_admin().unwrap());
    assert!(matches!(
        f.auth.create_admin("root@example.com", "short").await,
        Err(AuthError::InvalidParam(_))
    ));
    assert!(matches!(
        f.auth.create_admin("not an email", "long enough").await,
        Err(AuthError::InvalidParam(_))
    ));
    f.auth.create_admin("Root@Example.com", "admin password").await.unwrap();
    assert!(f.auth.has_admin().unwrap());
    assert!(matches!(
        f.auth.create_admin("root@example.com", "admin password").await,
        Err(AuthError::AdminExists(_))
    ));
    assert!(matches!(
        f.auth.admin_login("root@example.com", "wrong password").await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        f.auth.admin_login("nobody@example.com", "admin password").await,
        Err(AuthError::InvalidCredentials)
    ));
    let t = f.auth.admin_login("ROOT@example.com", "admin password").await.unwrap();
    assert_eq!(t.expires_in, 3600);
    assert_eq!(f.auth.verify_bearer(&t.token).unwrap(), Caller::Admin);
    assert_eq!(claims_of(&t.token)["typ"], "admin");

    let (key, commit) = f.auth.create_api_key("ci").unwrap();
    commit.wait().await.unwrap();
    assert!(key.key.starts_with("lb_"));
    assert!(key.key.starts_with(&key.info.prefix));
    assert_eq!(f.auth.verify_bearer(&key.key).unwrap(), Caller::Admin);
    assert_eq!(f.auth.api_keys().unwrap(), vec![key.info.clone()]);
    let mut wrong = key.key.clone();
    wrong.pop();
    wrong.push('!');
    assert!(is_unauthenticated(f.auth.verify_bearer(&wrong)));
    f.auth.revoke_api_key(&key.info.id).unwrap().wait().await.unwrap();
    assert!(is_unauthenticated(f.auth.verify_bearer(&key.key)));
    assert!(f.auth.api_keys().unwrap().is_empty());
    assert!(matches!(
        f.auth.revoke_api_key(&key.info.id),
        Err(AuthError::ApiKeyNotFound(_))
    ));
    assert!(matches!(f.auth.create_api_key(""), Err(AuthError::InvalidParam(_))));
    // a user token is not an admin
    let u = f.auth.sign_in_anonymously("default").await.unwrap();
    assert!(matches!(f.auth.verify_bearer(&u.access_token), Ok(Caller::User(_))));
}

#[tokio::test]
async fn users_are_listed_searched_and_paged() {
    let f = fixture();
    for name in ["alice", "bob", "carol", "alicia"] {
        f.auth.sign_up("default", signup(name), None).await.unwrap();
    }
    f.auth.sign_in_anonymously("default").await.unwrap();
    let all = f.auth.list_users("default", None, None, None).unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(all.users.len(), 5);
    let ali = f.auth.list_users("default", Some("ALI"), None, None).unwrap();
    assert_eq!(ali.total, 2);
    let page = f.auth.list_users("default", None, Some(2), Some(4)).unwrap();
    assert_eq!((page.total, page.users.len()), (5, 1));
    assert!(matches!(
        f.auth.list_users("default", None, Some(0), None),
        Err(AuthError::InvalidParam(_))
    ));
    assert!(matches!(
        f.auth.list_users("nope", None, None, None),
        Err(AuthError::Db(DbError::InvalidEnv(_)))
    ));
    let json = serde_json::to_value(&all.users[0]).unwrap();
    assert!(json.get("password").is_none());
}

#[test]
fn login_types_serialize_as_cloudbase_strings() {
    for (lt, s) in [
        (LoginType::Anonymous, "ANONYMOUS"),
        (LoginType::Username, "USERNAME"),
        (LoginType::Email, "EMAIL"),
        (LoginType::Custom, "CUSTOM"),
        (LoginType::WeChatOpen, "WECHAT-OPEN"),
    ] {
        assert_eq!(serde_json::to_value(lt).unwrap(), json!(s));
        assert_eq!(lt.as_str(), s);
    }
    let id = Identity {
        env: "e".into(),
        uid: "u".into(),
        openid: None,
        unionid: None,
        login_type: LoginType::Username,
        anonymous: false,
    };
    assert_eq!(id.caller_id(), "u");
    assert_eq!(Caller::User(id).caller_id(), Some("u"));
    assert_eq!(Caller::Admin.caller_id(), None);
}

#[test]
fn the_configured_admin_key_is_an_admin_and_near_misses_are_not() {
    let f = fixture_with(settings());
    assert_eq!(
        f.auth.verify_bearer("a-static-key-of-at-least-32-characters").unwrap(),
        Caller::Admin
    );
    assert!(f.auth.verify_bearer("a-static-key-of-at-least-32-characterS").is_err());
    assert!(f.auth.verify_bearer("a-static-key-of-at-least-32-characters ").is_err());
}
