//! Memory of this process, from `/proc/self/status` (Linux). Elsewhere every
//! reading is `None` and the JSON field is `null`: never a guessed number.

/// A field of `/proc/self/status` given in kB (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory now (`VmRSS`).
pub(crate) fn rss_bytes() -> Option<u64> {
    status_bytes("VmRSS")
}

/// The high-water mark of resident memory (`VmHWM`): since the process
/// started, or since the last successful [`reset_peak_rss`].
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM")
}

/// Resets the high-water mark to the current resident size (writing `5` to
/// `/proc/self/clear_refs`), so that each repetition reports its own peak.
/// Returns whether the kernel allowed it; when it did not, the peak covers
/// every repetition so far.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The 1-minute load average (`/proc/loadavg`): on a shared machine, a
/// number to read beside every timing.
pub(crate) fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// `after - before`, or `None` when either reading is missing. Memory can
/// also shrink (the allocator returned pages), hence the signed result.
pub(crate) fn delta(before: Option<u64>, after: Option<u64>) -> Option<i64> {
    Some(after? as i64 - before? as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_consistent_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let rss = rss_bytes().expect("VmRSS");
        let peak = peak_rss_bytes().expect("VmHWM");
        assert!(rss > 0);
        assert!(peak >= rss);
        assert!(load_average().expect("/proc/loadavg") >= 0.0);
    }
}
