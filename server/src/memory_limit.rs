//! `--memory-limit`: how much memory all queries together may hold, as the
//! operator writes it (`2GiB`, `512MB`, `none`) and, when unset, a default
//! from what this process may use, so that a query too large for the
//! machine fails with SQLSTATE 53200 instead of the kernel killing the
//! server.

/// A `--memory-limit` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// At most this many bytes.
    Bytes(usize),
    /// `none`: no limit at all.
    Unlimited,
}

impl MemoryLimit {
    /// The limit in bytes to give the engine (`None`: unlimited); unset,
    /// [`default_memory_limit`].
    pub fn resolve(limit: Option<MemoryLimit>) -> Option<usize> {
        match limit {
            Some(MemoryLimit::Bytes(bytes)) => Some(bytes),
            Some(MemoryLimit::Unlimited) => None,
            None => default_memory_limit(),
        }
    }
}

/// Parses a byte count with an optional unit (`bytesize`'s syntax), or
/// `none`.
pub fn parse_memory_limit(text: &str) -> Result<MemoryLimit, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(MemoryLimit::Unlimited);
    }
    let size: bytesize::ByteSize = text.parse()?;
    let bytes = usize::try_from(size.as_u64()).map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("the memory limit must be more than 0 bytes".into());
    }
    Ok(MemoryLimit::Bytes(bytes))
}

/// Three quarters of the memory this process may use: the machine's
/// (`MemTotal` in `/proc/meminfo`) or its cgroup's limit (`memory.max`,
/// cgroup v2), whichever is lower; the rest is left to the process itself
/// (models, caches, connections). `None` where neither can be read.
/// Hand-written: two kernel files for one number did not justify a
/// system-information crate.
pub fn default_memory_limit() -> Option<usize> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok());
    let available = [machine, cgroup].into_iter().flatten().min()?;
    Some(available / 4 * 3)
}

/// `MemTotal` of `/proc/meminfo`'s text, in bytes.
fn mem_total(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_none() {
        assert_eq!(parse_memory_limit("2GiB"), Ok(MemoryLimit::Bytes(2 << 30)));
        assert_eq!(parse_memory_limit(" none "), Ok(MemoryLimit::Unlimited));
        assert!(parse_memory_limit("0").is_err());
        assert!(parse_memory_limit("lots").is_err());
    }

    #[test]
    fn reads_mem_total() {
        let text = "MemTotal:       24683784 kB\nMemFree:  100 kB\n";
        assert_eq!(mem_total(text), Some(24683784 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB"), None);
    }

    #[test]
    fn unset_means_the_default() {
        assert_eq!(MemoryLimit::resolve(Some(MemoryLimit::Unlimited)), None);
        assert_eq!(MemoryLimit::resolve(Some(MemoryLimit::Bytes(5))), Some(5));
        assert_eq!(MemoryLimit::resolve(None), default_memory_limit());
    }
}
