//! The server secret: the HMAC key that turns a cookie into a `SessionKey`,
//! kept in a file beside the database (mode 0600), with a fingerprint in the
//! database so that a lost or replaced secret is refused at start.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Settings;
use crate::store::{SessionKey, Store};

/// The name of the stored secret fingerprint (not an admin setting: the
/// admin API neither shows nor accepts it).
pub const SECRET_FINGERPRINT_KEY: &str = "secret_fingerprint";

/// Loads the server secret, creating it only for a database that has no
/// sessions keyed with another one. A missing or replaced secret would give
/// every cookie a new key, so a session that ended here would look like a new
/// login: refused, naming both files.
pub async fn open(settings: &Settings, store: &Store) -> Result<[u8; 32], String> {
    if let Some(url) = &settings.database_url {
        return open_shared(settings, store, &crate::store::redact_url(url)).await;
    }
    let path = settings.secret_file.display();
    let db = settings.db.display();
    let mut sessions = 0usize;
    store.for_each(|_, _| sessions += 1);
    if sessions > 0 && !settings.secret_file.exists() {
        return Err(format!(
            "secret file {path} is missing, but database {db} holds {sessions} sessions keyed \
             with it: restore the secret file from a backup (a new secret would make sessions \
             that ended here look like new logins)"
        ));
    }
    let secret = load_or_create_secret(&settings.secret_file)?;
    let fingerprint = secret_fingerprint(&secret);
    match store
        .read_settings()
        .map_err(|e| e.to_string())?
        .get(SECRET_FINGERPRINT_KEY)
    {
        Some(f) if *f == fingerprint => Ok(secret),
        Some(_) if sessions > 0 => Err(format!(
            "secret file {path} is not the secret database {db} holds {sessions} sessions keyed \
             with: restore the right secret file (another secret would make sessions that ended \
             here look like new logins)"
        )),
        // A new database, one from before fingerprints, or one with no
        // session left to protect: this secret is the one from now on.
        _ => {
            store
                .set_setting(
                    SECRET_FINGERPRINT_KEY,
                    &fingerprint,
                    "server secret fingerprint recorded",
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(secret)
        }
    }
}

/// The secret of replicas sharing one database: every replica must hold the
/// same one. The first to start records its fingerprint (only if none is
/// recorded, so two starting together cannot both win); the others check
/// theirs against it.
async fn open_shared(settings: &Settings, store: &Store, db: &str) -> Result<[u8; 32], String> {
    let path = settings.secret_file.display();
    let recorded = || -> Result<Option<String>, String> {
        Ok(store
            .read_settings()
            .map_err(|e| e.to_string())?
            .get(SECRET_FINGERPRINT_KEY)
            .cloned())
    };
    if recorded()?.is_some() && !settings.secret_file.exists() {
        return Err(format!(
            "secret file {path} is missing, but database {db} is used with a secret already: \
             copy the secret file of the other replicas here"
        ));
    }
    let secret = load_or_create_secret(&settings.secret_file)?;
    let fingerprint = secret_fingerprint(&secret);
    store
        .add_setting(
            SECRET_FINGERPRINT_KEY,
            &fingerprint,
            "server secret fingerprint recorded",
        )
        .await
        .map_err(|e| e.to_string())?;
    match recorded()? {
        Some(f) if f == fingerprint => Ok(secret),
        _ => Err(format!(
            "secret file {path} is not the secret the other replicas of database {db} use: \
             every replica needs the same secret file (with another one, a session that ended \
             through one replica would look new to this one)"
        )),
    }
}

/// HMAC-SHA-256 of a cookie value under the server secret, cut to 128 bits.
pub fn key_for(secret: &[u8; 32], cookie_value: &str) -> SessionKey {
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    cut(mac.chain_update(cookie_value.as_bytes()))
}

pub(crate) fn cut(mac: Hmac<Sha256>) -> SessionKey {
    let full = mac.finalize().into_bytes();
    let mut key = [0u8; 16];
    key.copy_from_slice(&full[..16]);
    SessionKey(key)
}

/// A short public fingerprint of the secret, kept in the database so that a
/// lost or replaced secret file is noticed at start instead of silently
/// re-keying every session (which would make ended sessions look new).
pub fn secret_fingerprint(secret: &[u8; 32]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"session-timeout secret fingerprint");
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Reads the server secret kept beside the database, creating it on first
/// start (32 random bytes, hex, readable by the owner only).
pub fn load_or_create_secret(path: &Path) -> Result<[u8; 32], String> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let bytes = hex::decode(s.trim())
                .map_err(|_| format!("secret file {} is not hex", path.display()))?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                format!(
                    "secret file {} must hold 32 bytes (64 hex digits)",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::RngCore;
            use std::io::Write;
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(path)
                .map_err(|e| format!("cannot create secret file {}: {e}", path.display()))?;
            f.write_all(hex::encode(secret).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write secret file {}: {e}", path.display()))?;
            log::info!("created a new server secret in {}", path.display());
            Ok(secret)
        }
        Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
    }
}
