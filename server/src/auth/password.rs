//! Password hashing: argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1), PHC strings,
//! run on blocking threads at most [`HASH_PERMITS`] at a time so a login flood queues instead of
//! exhausting CPU and memory.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::AuthError;

/// Memory cost in KiB (19 MiB).
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Iterations.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;
/// Hashes or verifications running at once (each holds 19 MiB while it runs).
pub const HASH_PERMITS: usize = 2;

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 256;

fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32))
        .map_err(|e| AuthError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks the length rules (counted in characters).
pub fn check_strength(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(AuthError::InvalidParam(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if n > MAX_PASSWORD_LEN {
        return Err(AuthError::InvalidParam(format!(
            "the password must have at most {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// Hashes on the calling thread (the CLI; async code uses [`Hasher::hash`]).
pub fn hash_blocking(password: &str) -> Result<String, AuthError> {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| AuthError::Internal(format!("salt: {e}")))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Internal(format!("argon2: {e}")))
}

/// Verifies on the calling thread. The comparison inside is constant-time.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!("a stored password hash does not parse");
        return false;
    };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Bounded, off-the-async-workers hashing.
pub struct Hasher {
    permits: Semaphore,
    pool: std::sync::mpsc::Sender<Job>,
    /// Verified against when the account does not exist, so a wrong username costs the same time
    /// as a wrong password (no user enumeration by timing).
    dummy: Arc<OnceLock<String>>,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            permits: Semaphore::new(HASH_PERMITS),
            pool: spawn_pool(HASH_PERMITS),
            dummy: Arc::new(OnceLock::new()),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.to_string();
        self.run(move || hash_blocking(&password)).await?
    }

    /// `phc: None` (no such account, or no password set) still spends the time of one verification
    /// and returns false.
    pub async fn verify(&self, password: &str, phc: Option<String>) -> Result<bool, AuthError> {
        let password = password.to_string();
        let dummy = self.dummy.clone();
        self.run(move || match phc {
            Some(phc) => Ok(verify_blocking(&password, &phc)),
            None => {
                let phc = match dummy.get() {
                    Some(d) => d.clone(),
                    None => {
                        let d = hash_blocking(&format!("{:032x}", rand::random::<u128>()))?;
                        dummy.get_or_init(|| d).clone()
                    }
                };
                let _ = verify_blocking(&password, &phc);
                Ok(false)
            }
        })
        .await?
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AuthError::Internal("password hasher closed".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.pool
            .send(job)
            .map_err(|_| AuthError::Internal("password threads are gone".into()))?;
        rx.await.map_err(|_| AuthError::Internal("password task failed".into()))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash: exactly as many as there are permits. argon2 allocates its memory
/// (19 MiB a hash) on the thread that runs it, and the allocator keeps a per-thread arena, so
/// hashing on a few dedicated threads instead of the shared blocking pool keeps memory at a few
/// times 19 MiB however many sign-ins arrive (measured: ~640 MB peak on the blocking pool).
fn spawn_pool(threads: usize) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("lightbase-argon2-{i}"))
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a password thread");
        }
    }
    tx
}
