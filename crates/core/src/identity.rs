//! Which build is this process?
//!
//! Workers run the user's own executable, and a task travels as a registered
//! op name. That is only sound if both ends run the very same build: the same
//! name could mean different code in another build. The build id is a hash of
//! this executable's bytes, computed once; a handshake compares it and refuses
//! a mismatched peer (see [`check_peer`]).

use std::sync::OnceLock;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, ErrorKind, Result};

/// The build id of this executable: 32 hex digits of XXH3-128 over its file.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let hashed = std::env::current_exe().and_then(|path| {
            let mut file = std::fs::File::open(path)?;
            let mut hasher = Xxh3::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = std::io::Read::read(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(hasher.digest128())
        });
        match hashed {
            Ok(h) => format!("{h:032x}"),
            // Without our own file we cannot prove identity: a unique id
            // makes every handshake fail with the clear mismatch error.
            Err(e) => {
                tracing::warn!("cannot read this executable to compute its build id: {e}");
                format!("unreadable-{}", std::process::id())
            }
        }
    })
}

/// Checks a peer's build id against ours; `who` names the peer in the error.
pub fn check_peer(peer_build_id: &str, who: &str) -> Result<()> {
    if peer_build_id == build_id() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::BuildMismatch,
            format!(
                "{who} runs a different executable (build id {peer_build_id}, this process has {}): \
                 workers must run the same build as the client, because tasks travel as the names \
                 of functions compiled into it; restart the workers from this binary",
                build_id()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_is_stable_and_checks() {
        assert_eq!(build_id(), build_id());
        assert_eq!(build_id().len(), 32);
        check_peer(build_id(), "worker").unwrap();
        let err = check_peer("0000", "worker 3").unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::BuildMismatch);
        assert!(err.to_string().contains("worker 3 runs a different executable"));
    }
}
