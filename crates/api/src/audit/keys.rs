//! The writer's signing key and the trust file.
//!
//! - `DATA/keys/<key id>.key`: one Ed25519 secret key (32 bytes, hex), created on first start with mode
//!   0600. It is never logged or printed.
//! - `DATA/trust.json`: the public keys whose signatures count, each with its validity period
//!   ([`Trust`]). The current key is the newest open-ended entry whose secret is in `DATA/keys`.
//!   `rectify audit rotate-key` closes the current key's period and starts a new key (service stopped):
//!   old seals stay valid because they were made within the old key's period.

use anyhow::Context;
use chrono::{DateTime, Utc};
use rectify_domain::audit::{SigningKey, Trust, TrustedKey};
use rectify_domain::hex_text;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `DATA/trust.json`.
pub fn trust_path(data_dir: &Path) -> PathBuf {
    data_dir.join("trust.json")
}

fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Reads a trust file.
pub fn read_trust(path: &Path) -> anyhow::Result<Trust> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the trust file {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing the trust file {}", path.display()))
}

/// Writes a trust file atomically (temp file, then rename).
pub fn write_trust(path: &Path, trust: &Trust) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(trust)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn read_secret(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} does not hold a 32-byte hex key", path.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

fn write_secret(dir: &Path, key: &SigningKey) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let id = rectify_domain::audit::signed::key_id(&key.verifying_key());
    let path = dir.join(format!("{id}.key"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(hex_text::encode(key.to_bytes()).as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn generate() -> SigningKey {
    // rand's thread generator is a CSPRNG seeded from the operating system.
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// The writer's current key, if the data dir has one.
pub fn load_current(data_dir: &Path) -> anyhow::Result<Option<SigningKey>> {
    let path = trust_path(data_dir);
    if !path.exists() {
        return Ok(None);
    }
    current(data_dir, &read_trust(&path)?)
}

fn current(data_dir: &Path, trust: &Trust) -> anyhow::Result<Option<SigningKey>> {
    let path = trust_path(data_dir);
    let current = trust
        .keys
        .iter()
        .filter(|k| k.valid_until.is_none())
        .filter(|k| keys_dir(data_dir).join(format!("{}.key", k.key_id)).exists())
        .max_by_key(|k| k.valid_from);
    if let Some(k) = current {
        let key = read_secret(&keys_dir(data_dir).join(format!("{}.key", k.key_id)))?;
        anyhow::ensure!(
            hex_text::encode(key.verifying_key().as_bytes()) == k.public_key,
            "the key file of {} does not match its public key in {}",
            k.key_id,
            path.display()
        );
        return Ok(Some(key));
    }
    Ok(None)
}

/// The writer's current key: loaded, or created (and added to the trust file) on first start.
pub fn load_or_create(data_dir: &Path, now: DateTime<Utc>) -> anyhow::Result<SigningKey> {
    let path = trust_path(data_dir);
    let mut trust = if path.exists() { read_trust(&path)? } else { Trust::default() };
    if let Some(key) = current(data_dir, &trust)? {
        return Ok(key);
    }
    let key = generate();
    write_secret(&keys_dir(data_dir), &key)?;
    trust.keys.push(TrustedKey::new(&key.verifying_key(), now, &format!("writer of {}", data_dir.display())));
    write_trust(&path, &trust)?;
    tracing::info!(key_id = %rectify_domain::audit::signed::key_id(&key.verifying_key()), "created the writer's signing key");
    Ok(key)
}

/// Ends the current key's validity at `now` and starts a new key from `now` on; returns the new key id.
/// Run with the service stopped: a running service keeps signing with the key it loaded.
pub fn rotate(data_dir: &Path, now: DateTime<Utc>) -> anyhow::Result<String> {
    let path = trust_path(data_dir);
    let mut trust = read_trust(&path)?;
    for k in trust.keys.iter_mut().filter(|k| k.valid_until.is_none()) {
        if keys_dir(data_dir).join(format!("{}.key", k.key_id)).exists() {
            k.valid_until = Some(now);
        }
    }
    write_trust(&path, &trust)?;
    let key = load_or_create(data_dir, now)?;
    Ok(rectify_domain::audit::signed::key_id(&key.verifying_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_rotation_keeps_the_old_one_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Utc::now();
        let a = load_or_create(dir.path(), t0).unwrap();
        let again = load_or_create(dir.path(), t0).unwrap();
        assert_eq!(a.to_bytes(), again.to_bytes());
        let trust = read_trust(&trust_path(dir.path())).unwrap();
        assert_eq!(trust.keys.len(), 1);

        let new_id = rotate(dir.path(), t0 + chrono::Duration::hours(1)).unwrap();
        let b = load_or_create(dir.path(), t0).unwrap();
        assert_eq!(rectify_domain::audit::signed::key_id(&b.verifying_key()), new_id);
        let trust = read_trust(&trust_path(dir.path())).unwrap();
        assert_eq!(trust.keys.len(), 2);
        assert!(trust.keys[0].valid_until.is_some() && trust.keys[1].valid_until.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let f = dir.path().join("keys").join(format!("{new_id}.key"));
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
