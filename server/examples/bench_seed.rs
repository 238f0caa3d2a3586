//! Benchmark set-up: writes N internal sessions, active now, into a fresh
//! sidecar database, keyed like the real server keys cookies `bench-0` ..
//! `bench-{N-1}` (HMAC under the secret file beside the database). Not part of
//! the product.
//!
//!     bench_seed DB_PATH N

use std::path::PathBuf;

use session_timeout::clock::{Clock, SystemClock};
use session_timeout::secret::{key_for, load_or_create_secret};
use session_timeout::store::{Store, StoreOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let db = PathBuf::from(args.next().expect("usage: bench_seed DB_PATH N"));
    let n: usize = args.next().expect("usage: bench_seed DB_PATH N").parse()?;
    let mut secret_path = db.clone().into_os_string();
    secret_path.push(".secret");
    let secret = load_or_create_secret(&PathBuf::from(secret_path)).map_err(anyhow::Error::msg)?;
    // Let the real store create and migrate the schema.
    Store::open(&db, StoreOptions::default(), SystemClock::new().now())?.close();
    let mut conn = rusqlite::Connection::open(&db)?;
    let now = SystemClock::new().now().0;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT OR REPLACE INTO sessions (key, created_ms, last_activity_ms, uid, class, verified) VALUES (?1, ?2, ?2, ?3, 0, 1)",
        )?;
        for i in 0..n {
            let key = key_for(&secret, &format!("bench-{i}"));
            stmt.execute(rusqlite::params![&key.0[..], now, (i % 1000 + 2) as i64])?;
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    println!("seeded {n} sessions into {}", db.display());
    Ok(())
}
